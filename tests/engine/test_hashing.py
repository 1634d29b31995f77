"""Canonical encoding and node keys: deterministic, type-tagged, loud on what they cannot hash."""

from __future__ import annotations

import math
from pathlib import PurePosixPath

import numpy as np
import pytest

from vortex_jupyter.engine.hashing import MAX_ARRAY_BYTES, canonical, inputs_blob, node_key
from vortex_jupyter.engine.testing import assert_stable_across_processes
from vortex_jupyter.errors import HashError


def test_scalars_of_different_types_encode_differently():
    values = [1, 1.0, True, "1", b"1", None, [1], {"1": 1}]
    encodings = {canonical(v) for v in values}
    assert len(encodings) == len(values)


def test_false_zero_and_empty_string_differ():
    assert len({canonical(v) for v in (False, 0, 0.0, "", b"", None, [], {})}) == 8


def test_tuples_and_lists_encode_alike_so_json_round_trips_keep_the_cache():
    assert canonical((1, "a", (2.5,))) == canonical([1, "a", [2.5]])


def test_dict_key_order_does_not_matter():
    assert canonical({"a": 1, "b": [1, 2]}) == canonical({"b": [1, 2], "a": 1})


def test_negative_zero_folds_into_zero_like_the_model_no_op_check():
    assert canonical(-0.0) == canonical(0.0)


def test_nan_raises_and_infinity_is_allowed():
    with pytest.raises(HashError, match="NaN"):
        canonical(float("nan"))
    assert canonical(math.inf) != canonical(-math.inf)


def test_huge_ints_hash_without_the_str_digit_limit():
    assert canonical(10**5000) != canonical(10**5000 + 1)


def test_numpy_scalars_are_tagged_by_dtype():
    assert canonical(np.int64(1)) != canonical(1)
    assert canonical(np.int64(1)) != canonical(np.int32(1))
    assert canonical(np.float32(0.5)) == canonical(np.float32(0.5))


def test_numpy_arrays_hash_by_dtype_shape_and_bytes():
    a = np.arange(6, dtype=np.float32)
    assert canonical(a) == canonical(a.copy())
    assert canonical(a) != canonical(a.reshape(2, 3))
    assert canonical(a) != canonical(a.astype(np.float64))
    assert canonical(a.reshape(2, 3).T) == canonical(np.ascontiguousarray(a.reshape(2, 3).T))


def test_object_and_oversized_arrays_raise():
    with pytest.raises(HashError, match="dtype"):
        canonical(np.array([object()], dtype=object))
    with pytest.raises(HashError, match="too large"):
        canonical(np.zeros(MAX_ARRAY_BYTES + 1, dtype=np.uint8))


def test_paths_and_bytes_hash():
    assert canonical(PurePosixPath("a/b")) != canonical("a/b")
    assert canonical(bytearray(b"xy")) == canonical(b"xy")


def test_unhashable_param_error_names_node_param_and_fix():
    with pytest.raises(HashError) as info:
        node_key("Load", "1", {"thing": object()}, {}, node="7")
    text = str(info.value)
    assert "'7'" in text and "'thing'" in text and "object" in text
    assert info.value.code == "VE-400"
    assert "always_run" in (info.value.hint or "")


def test_deep_nesting_raises_instead_of_recursing_forever():
    deep: list = []
    for _ in range(200):
        deep = [deep]
    with pytest.raises(HashError, match="nested"):
        canonical(deep)


def test_node_key_depends_on_type_version_params_inputs_and_fingerprint():
    base = node_key("add", "1", {"a": 1}, {"b": ("k" * 64, 0)})
    variants = [
        node_key("sub", "1", {"a": 1}, {"b": ("k" * 64, 0)}),
        node_key("add", "2", {"a": 1}, {"b": ("k" * 64, 0)}),
        node_key("add", "1", {"a": 2}, {"b": ("k" * 64, 0)}),
        node_key("add", "1", {"a": 1}, {"b": ("k" * 64, 1)}),
        node_key("add", "1", {"a": 1}, {"c": ("k" * 64, 0)}),
        node_key("add", "1", {"a": 1}, {"b": ("j" * 64, 0)}),
        node_key("add", "1", {"a": 1}, {"b": ("k" * 64, 0)}, fingerprint="mtime"),
    ]
    assert len({base, *variants}) == len(variants) + 1
    assert len(base) == 64 and int(base, 16) >= 0


def test_node_key_ignores_the_node_id_and_input_order():
    k1 = node_key("add", "1", {"a": 1}, {"x": ("a" * 64, 0), "y": ("b" * 64, 0)}, node="1")
    k2 = node_key("add", "1", {"a": 1}, {"y": ("b" * 64, 0), "x": ("a" * 64, 0)}, node="99")
    assert k1 == k2


def test_inputs_blob_sorts_by_input_name():
    assert inputs_blob([("b", "k", 0), ("a", "j", 1)]) == inputs_blob([("a", "j", 1), ("b", "k", 0)])


def test_encoding_is_stable_across_processes():
    assert_stable_across_processes([
        1, -1, 2**80, 0.1, -0.0, math.inf, "héllo", b"\x00\xff", None, True,
        [1, (2, "x")], {"z": 1, "a": {"nested": [1.5]}}, np.arange(4, dtype=np.int16), np.float32(3.25),
    ])
