"""Safe paths: roots from the environment, and every traversal trick rejected with VE-700."""

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vortex_jupyter.errors import PathError
from vortex_jupyter.nodes.paths import input_root, output_root, safe_join, temp_root


def test_roots_come_from_the_environment_at_call_time(tmp_path, monkeypatch):
    monkeypatch.setenv("VORTEX_INPUT_DIR", str(tmp_path / "in"))
    monkeypatch.setenv("VORTEX_OUTPUT_DIR", str(tmp_path / "out"))
    monkeypatch.setenv("VORTEX_TEMP_DIR", str(tmp_path / "tmp"))
    assert (input_root(), output_root(), temp_root()) == (tmp_path / "in", tmp_path / "out", tmp_path / "tmp")


def test_default_roots_are_input_and_output_under_the_working_directory(tmp_path, monkeypatch):
    for name in ("VORTEX_INPUT_DIR", "VORTEX_OUTPUT_DIR", "VORTEX_TEMP_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    assert input_root() == tmp_path / "input" and output_root() == tmp_path / "output"
    assert temp_root().is_absolute()


def test_relative_names_with_subfolders_join_inside_the_root(tmp_path):
    assert safe_join(tmp_path, "cat.png") == tmp_path.resolve() / "cat.png"
    assert safe_join(str(tmp_path), "pets/cats/tabby.png") == tmp_path.resolve() / "pets/cats/tabby.png"
    assert safe_join(tmp_path, "./a.png") == tmp_path.resolve() / "a.png"


@pytest.mark.parametrize(
    "name, why",
    [
        ("../x.png", "'..' components"),
        ("a/../../x.png", "'..' components"),
        ("a/../b.png", "'..' components"),  # even when it would stay inside
        ("/etc/passwd", "absolute paths"),
        ("a\\b.png", "backslash"),
        ("..\\..\\x.png", "backslash"),
        ("C:x.png", "drive letters"),
        ("c:/windows/win.ini", "drive letters"),
        ("x\x00.png", "NUL byte"),
        ("", "empty"),
        ("   ", "empty"),
        ("a" * 5000, "longer than"),
        (42, "expected a string"),
    ],
)
def test_traversal_attempts_raise_path_error_naming_value_root_and_fix(tmp_path, name, why):
    with pytest.raises(PathError) as info:
        safe_join(tmp_path, name)
    err = info.value
    assert err.code == "VE-700" and why in err.message
    assert str(tmp_path) in err.message and err.hint and "relative name" in err.hint
    if isinstance(name, str) and len(name) < 100:
        assert repr(name) in err.message


def test_a_symlink_that_leaves_the_root_is_rejected(tmp_path):
    root = tmp_path / "root"
    outside = tmp_path / "secret"
    root.mkdir()
    outside.mkdir()
    (outside / "key.png").write_bytes(b"x")
    os.symlink(outside, root / "escape")
    os.symlink(outside / "key.png", root / "link.png")
    for name in ("escape/key.png", "link.png", "escape"):
        with pytest.raises(PathError, match="outside the root"):
            safe_join(root, name)


def test_a_symlink_that_stays_inside_the_root_is_followed(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "a.png").write_bytes(b"x")
    os.symlink(tmp_path / "real", tmp_path / "alias")
    assert safe_join(tmp_path, "alias/a.png") == (tmp_path / "real" / "a.png").resolve()


def test_a_root_that_is_itself_a_symlink_still_works(tmp_path):
    (tmp_path / "data").mkdir()
    os.symlink(tmp_path / "data", tmp_path / "link")
    assert safe_join(Path(tmp_path / "link"), "x.png") == (tmp_path / "data" / "x.png").resolve()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(["..", ".", "a", "b", "/", "\\", "C:", "\x00", "~", " ", "..."]), max_size=8))
def test_no_name_built_from_path_pieces_escapes_the_root(tmp_path, pieces):
    name = "".join(pieces)
    try:
        joined = safe_join(tmp_path, name)
    except PathError:
        return
    assert joined.is_relative_to(tmp_path.resolve())
