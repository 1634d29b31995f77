"""Deterministic, type-tagged encoding of param values, and the Merkle cache key of a node.

Policy (what makes two values "the same" for the cache):

- every value is encoded with a one-byte type tag, so ``1``, ``1.0``, ``True`` and ``"1"``
  give four different encodings (a node may well behave differently for each);
- ``tuple`` and ``list`` encode alike: a graph saved to JSON and loaded back turns tuples into
  lists and must keep its cache;
- dict keys are sorted by their own encoding, so insertion order never matters;
- floats are encoded exactly (``float.hex``); ``-0.0`` is folded into ``0.0`` because the graph
  model treats an edit from one to the other as a no-op (``-0.0 == 0.0``), so the key must not
  see a difference the model never reports; NaN raises (NaN != NaN would make every run a
  miss, and validation rejects it anyway); +/-inf are allowed;
- numpy scalars encode as dtype + bytes, numpy arrays (up to ``MAX_ARRAY_BYTES``) as dtype +
  shape + C-order bytes, so ``np.int64(1)`` and ``1`` differ but equal arrays match;
- anything else raises ``HashError`` naming the node and param and saying what to do.

A node's key is SHA-256 over (type, spec version, params with defaults filled, the keys of its
inputs ordered by input name with the output index, fingerprint). Node ids never enter it, so
renumbering or copying a graph keeps its cache.

>>> canonical(1) != canonical(1.0) != canonical(True)
True
>>> node_key("add", "1", {"a": 1, "b": 2}, {}) == node_key("add", "1", {"b": 2, "a": 1}, {})
True
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import PurePath
from typing import Any

from ..errors import HashError

__all__ = ["MAX_ARRAY_BYTES", "canonical", "encode_known", "inputs_blob", "key_from_blobs", "node_key", "params_blob"]

#: Arrays larger than this are not hashed by content (it would dominate every run).
MAX_ARRAY_BYTES = 16 * 1024 * 1024
_MAX_DEPTH = 64
_PREFIX = b"vortex-key/1\0"


def canonical(value: Any) -> bytes:
    """The canonical encoding of ``value`` (deterministic across processes and runs)."""
    out: list[bytes] = []
    _encode(value, out, 0)
    return b"".join(out)


def _text(v: Any) -> str | None:
    """The canonical text of a plain scalar (None for anything else).

    Scalars are encoded as text and then as UTF-8 so that a node's params can be built as
    one string and encoded once (``params_blob``'s fast path) with exactly the same bytes.
    Lengths count code points; with the type tags that keeps the encoding unambiguous.
    """
    t = type(v)
    if t is str:
        return f"s{len(v)}:{v}"
    if t is int:
        return f"i{v:x};"  # hex: no 4300-digit str() limit for huge ints
    if t is float:
        return _float(v)
    if t is bool:
        return "T" if v else "F"
    if v is None:
        return "N"
    return None


def _encode(v: Any, out: list[bytes], depth: int) -> None:
    text = _text(v)
    if text is not None:
        out.append(text.encode("utf-8", "surrogatepass"))
    elif type(v) is list or type(v) is tuple:
        _sequence(v, out, depth)
    elif type(v) is dict:
        _mapping(v, out, depth)
    else:
        _encode_other(v, out, depth)


def _float(v: float) -> str:
    if v != v:
        raise HashError(
            "NaN cannot be part of a cache key",
            hint="use a number (NaN never equals itself, so the node would never be cached)",
        )
    if v == 0.0:
        v = 0.0  # fold -0.0 into 0.0, like the model's no-op check does
    return f"f{v.hex()};"  # exact: every bit of the double


def _sequence(v: list[Any] | tuple[Any, ...], out: list[bytes], depth: int) -> None:
    if depth >= _MAX_DEPTH:
        raise HashError(f"value is nested deeper than {_MAX_DEPTH} levels", hint="flatten the value")
    out.append(b"l%d:" % len(v))
    for item in v:
        _encode(item, out, depth + 1)


def _mapping(v: Mapping[Any, Any], out: list[bytes], depth: int) -> None:
    if depth >= _MAX_DEPTH:
        raise HashError(f"value is nested deeper than {_MAX_DEPTH} levels", hint="flatten the value")
    pairs = []
    for k, item in v.items():
        kb: list[bytes] = []
        _encode(k, kb, depth + 1)
        vb: list[bytes] = []
        _encode(item, vb, depth + 1)
        pairs.append((b"".join(kb), b"".join(vb)))
    pairs.sort()
    out.append(b"d%d:" % len(pairs))
    for kb2, vb2 in pairs:
        out.append(kb2)
        out.append(vb2)


def _encode_other(v: Any, out: list[bytes], depth: int) -> None:
    if isinstance(v, bool):  # bool subclasses are rare; keep their truth value
        out.append(b"T" if v else b"F")
    elif isinstance(v, (bytes, bytearray, memoryview)):
        b = bytes(v)
        out.append(b"b%d:" % len(b))
        out.append(b)
    elif isinstance(v, str):
        _encode(str(v), out, depth)
    elif isinstance(v, int):
        _encode(int(v), out, depth)
    elif isinstance(v, float):
        _encode(float(v), out, depth)
    elif isinstance(v, (list, tuple)):
        _sequence(v, out, depth)
    elif isinstance(v, Mapping):
        _mapping(v, out, depth)
    elif isinstance(v, PurePath):
        s = v.as_posix().encode("utf-8", "surrogatepass")
        out.append(b"p%d:" % len(s))
        out.append(s)
    elif type(v).__module__ == "numpy":
        out.append(_numpy(v))
    else:
        raise HashError(
            f"a value of type {type(v).__qualname__} cannot be part of a cache key",
            hint="pass plain data (numbers, strings, lists, dicts, bytes, numpy arrays), "
            "or declare the node always_run / give it a fingerprint",
        )


def _numpy(v: Any) -> bytes:
    import numpy as np

    if isinstance(v, np.generic):
        v = np.asarray(v)
        shape = b"scalar"
    else:
        shape = repr(tuple(v.shape)).encode()
    if not isinstance(v, np.ndarray) or v.dtype.hasobject:
        raise HashError(
            f"a numpy value of dtype {getattr(v, 'dtype', '?')} cannot be part of a cache key",
            hint="use a numeric array",
        )
    if v.nbytes > MAX_ARRAY_BYTES:
        raise HashError(
            f"a {v.nbytes / 2**20:.0f} MiB array is too large to hash into a cache key "
            f"(limit {MAX_ARRAY_BYTES // 2**20} MiB)",
            hint="load it inside the node from a file path param, or give the node a fingerprint",
        )
    data = np.ascontiguousarray(v).tobytes()
    dtype = v.dtype.str.encode()
    return b"a%d:%s%d:%s%d:" % (len(dtype), dtype, len(shape), shape, len(data)) + data


# ---- node keys ----------------------------------------------------------------------------


def params_blob(
    params: Mapping[str, Any], *, node: str | None = None, node_type: str = "",
    known: Mapping[str, tuple[Any, str]] | None = None,
) -> bytes:
    """Canonical bytes of a node's params (keys sorted); ``HashError`` names node and param.

    ``known`` (from ``encode_known``): name -> (value, its encoded text) for values shared by
    many nodes, e.g. a spec's defaults; a param that IS that value object reuses the text.
    """
    names = sorted(params) if len(params) > 1 else list(params)
    parts = [f"P{len(names)}:"]
    for name in names:
        value = params[name]
        if known:
            hit = known.get(name)
            if hit is not None and hit[0] is value:
                parts.append(hit[1])
                continue
        text = _text(value)
        if text is None:
            return _params_blob_slow(params, names, node, node_type)
        parts.append(f"{len(name)}:{name}{text}")
    return "".join(parts).encode("utf-8", "surrogatepass")


def encode_known(values: Mapping[str, Any]) -> dict[str, tuple[Any, str]]:
    """``params_blob``'s ``known`` for ``values`` (plain scalars only; others are skipped)."""
    out: dict[str, tuple[Any, str]] = {}
    for name, value in values.items():
        try:
            text = _text(value)
        except HashError:
            continue
        if text is not None:
            out[name] = (value, f"{len(name)}:{name}{text}")
    return out


def _params_blob_slow(params: Mapping[str, Any], names: list[str], node: str | None, node_type: str) -> bytes:
    """Same bytes as the fast path, for params holding lists, dicts, bytes, arrays ..."""
    parts = [f"P{len(names)}:".encode()]
    for name in names:
        try:
            value = canonical(params[name])
        except HashError as e:
            where = f"node {node!r} ({node_type})" if node is not None else f"a {node_type or 'node'}"
            raise HashError(f"{where} param {name!r}: {e.message}", hint=e.hint) from None
        parts.append(f"{len(name)}:{name}".encode("utf-8", "surrogatepass"))
        parts.append(value)
    return b"".join(parts)


def inputs_blob(inputs: Iterable[tuple[str, str, int]]) -> bytes:
    """Canonical bytes of (input name, source key, output index) triples, sorted by name."""
    parts = sorted(inputs)
    text = f"I{len(parts)}:" + "".join(f"{n}\0{k}\0{int(i)}\0" for n, k, i in parts)
    return text.encode("utf-8", "surrogatepass")


def head_blob(node_type: str, version: str) -> bytes:
    return _PREFIX + canonical(node_type) + canonical(str(version))


def key_from_blobs(head: bytes, params: bytes, inputs: bytes, fingerprint: bytes = b"") -> str:
    """The one place a key is composed; ``node_key`` and the incremental index both use it."""
    return hashlib.sha256(b"".join((head, params, inputs, fingerprint))).hexdigest()


def fingerprint_blob(value: Any, *, node: str | None = None) -> bytes:
    if value is None:
        return b""
    try:
        return b"X" + canonical(value)
    except HashError as e:
        raise HashError(f"node {node!r} fingerprint: {e.message}", hint=e.hint) from None


def node_key(
    type: str,
    version: str,
    params: Mapping[str, Any],
    input_keys: Mapping[str, tuple[str, int]],
    fingerprint: Any = None,
    *,
    node: str | None = None,
) -> str:
    """SHA-256 hex key of a node; ``input_keys`` maps input name -> (source key, output index).

    ``params`` should already have the spec's defaults filled in (``node`` only names the node
    in errors; it never enters the key).
    """
    return key_from_blobs(
        head_blob(type, version),
        params_blob(params, node=node, node_type=type),
        inputs_blob((n, k, i) for n, (k, i) in input_keys.items()),
        fingerprint_blob(fingerprint, node=node),
    )
