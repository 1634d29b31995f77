"""``open_under`` and friends: files under a root are opened without following any symlink below
the root (the root itself may be one), with VE-700 naming the link and the fix."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vortex_jupyter.errors import PathError
from vortex_jupyter.nodes.builtin.image import LoadImage, claim, list_input_images, save_target
from vortex_jupyter.nodes.paths import (
    makedirs_under,
    open_folder,
    open_under,
    path_under,
    safe_join,
    stat_under,
)


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    """``root`` with ``real/a.txt``; ``outside/secret.txt``; links below the root to both places."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "real").mkdir(parents=True)
    outside.mkdir()
    (root / "real" / "a.txt").write_bytes(b"inside")
    (outside / "secret.txt").write_bytes(b"secret")
    os.symlink(outside, root / "out_dir")
    os.symlink(root / "real", root / "in_dir")
    os.symlink(outside / "secret.txt", root / "out_file.txt")
    os.symlink("real/a.txt", root / "in_file.txt")
    return {"root": root, "outside": outside}


def test_open_under_creates_new_files_with_their_folders_and_reads_them_back(tmp_path):
    root = tmp_path / "out"  # made too
    with open_under(root, "a/b/./c.bin", "xb") as fh:
        fh.write(b"data")
    with open_under(root, "a/b/c.bin") as fh:
        assert fh.read() == b"data"
    with pytest.raises(FileExistsError):
        open_under(root, "a/b/c.bin", "xb")  # never overwrites
    assert (root / "a" / "b" / "c.bin").read_bytes() == b"data"


@pytest.mark.parametrize(("name", "link"), [("out_dir/secret.txt", "out_dir"), ("out_dir/new.txt", "out_dir"),
                                            ("in_dir/a.txt", "in_dir"), ("in_dir/new.txt", "in_dir"),
                                            ("out_file.txt", "out_file.txt"), ("in_file.txt", "in_file.txt")])
@pytest.mark.parametrize("mode", ["rb", "xb"])
def test_a_symlink_anywhere_below_the_root_is_refused_even_one_that_stays_inside(tree, name, link, mode):
    if mode == "xb" and name == link:  # a new file's name taken by a link: taken, the link is not followed
        with pytest.raises(FileExistsError):
            open_under(tree["root"], name, mode)
    else:
        with pytest.raises(PathError) as info:
            open_under(tree["root"], name, mode)
        err = info.value
        assert err.code == "VE-700" and f"{link!r} is a symlink" in err.message and repr(name) in err.message
        assert str(tree["root"]) in err.message and "copy the file or folder into the root" in (err.hint or "")
    assert sorted(p.name for p in tree["outside"].iterdir()) == ["secret.txt"]  # nothing made out there
    assert (tree["outside"] / "secret.txt").read_bytes() == b"secret"
    assert sorted(p.name for p in (tree["root"] / "real").iterdir()) == ["a.txt"]


def test_safe_join_still_accepts_a_symlink_inside_the_root_but_the_open_and_stat_refuse_it(tree):
    assert safe_join(tree["root"], "in_dir/a.txt") == (tree["root"] / "real" / "a.txt").resolve()
    for check in (open_under, stat_under):
        with pytest.raises(PathError, match="'in_dir' is a symlink"):
            check(tree["root"], "in_dir/a.txt")
    with pytest.raises(PathError, match=r"'in_file\.txt' is a symlink"):
        stat_under(tree["root"], "in_file.txt")
    assert stat_under(tree["root"], "real/a.txt").st_size == len(b"inside")


def test_a_root_that_is_itself_a_symlink_is_followed_once(tmp_path):
    (tmp_path / "data").mkdir()
    os.symlink(tmp_path / "data", tmp_path / "output")
    with open_under(tmp_path / "output", "x/y.txt", "xb") as fh:
        fh.write(b"ok")
    assert (tmp_path / "data" / "x" / "y.txt").read_bytes() == b"ok"
    assert path_under(tmp_path / "output", "x", "y.txt") == (tmp_path / "data" / "x" / "y.txt").resolve()
    assert makedirs_under(tmp_path / "output", "p/q") == (tmp_path / "data" / "p" / "q").resolve()
    assert (tmp_path / "data" / "p" / "q").is_dir()


@pytest.mark.parametrize(("name", "why"), [("../x.txt", "'..' components"), ("/etc/passwd", "absolute paths"),
                                           ("a\\b.txt", "backslash"), ("", "empty"), (".", "names the root folder"),
                                           ("./", "names the root folder")])
def test_open_under_refuses_what_safe_join_refuses_with_the_same_messages(tmp_path, name, why):
    for mode in ("rb", "xb"):
        with pytest.raises(PathError, match=why) as info:
            open_under(tmp_path, name, mode)
        assert info.value.code == "VE-700" and str(tmp_path) in info.value.message
    assert list(tmp_path.iterdir()) == []


def test_path_under_joins_names_skipping_empty_ones_and_refuses_traversal(tmp_path):
    assert path_under(tmp_path, "", "a.png") == tmp_path.resolve() / "a.png"
    assert path_under(tmp_path, "x/y", "a.png") == tmp_path.resolve() / "x" / "y" / "a.png"
    with pytest.raises(PathError, match=r"'\.\.' components"):
        path_under(tmp_path, "..", "a.png")


def test_a_fifo_in_the_input_folder_fails_at_once_instead_of_hanging(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    errors: list[BaseException] = []
    reader = threading.Thread(target=lambda: _record(errors, open_under, tmp_path, "pipe.png"), daemon=True)
    reader.start()
    reader.join(10)
    assert not reader.is_alive(), "opening a FIFO blocked"
    assert len(errors) == 1 and isinstance(errors[0], OSError) and "not a regular file" in str(errors[0])


def _record(errors: list[BaseException], func, *args) -> None:
    try:
        func(*args).close()
    except BaseException as exc:
        errors.append(exc)


def test_folders_and_files_in_the_wrong_place_are_os_errors_with_the_full_path(tmp_path):
    (tmp_path / "dir.png").mkdir()
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(IsADirectoryError):
        open_under(tmp_path, "dir.png")
    with pytest.raises(NotADirectoryError) as info:
        open_under(tmp_path, "file/x.png")
    assert info.value.filename == str(tmp_path.resolve() / "file")
    with pytest.raises(FileNotFoundError) as missing:
        open_under(tmp_path, "nowhere/x.png")
    assert missing.value.filename == str(tmp_path.resolve() / "nowhere")


def test_folder_unlink_removes_a_symlink_never_its_target(tree):
    with open_folder(tree["root"]) as folder:
        assert {"real", "out_dir", "in_file.txt"} <= set(folder.names())
        folder.unlink("out_file.txt")
        folder.unlink("gone.txt")  # not there: fine
    assert not os.path.lexists(tree["root"] / "out_file.txt")
    assert (tree["outside"] / "secret.txt").read_bytes() == b"secret"


def test_claim_skips_a_name_squatted_by_a_symlink_and_removes_its_file_when_the_body_fails(tree):
    os.symlink(tree["outside"] / "secret.txt", tree["root"] / "real" / "shot_00001_.png")
    with claim(tree["root"], "real", "shot") as (name, fh):
        fh.write(b"png")
    assert name == "shot_00002_.png" and (tree["outside"] / "secret.txt").read_bytes() == b"secret"
    with pytest.raises(RuntimeError), claim(tree["root"], "real", "shot") as (name, fh):
        fh.write(b"half")
        raise RuntimeError("encoder failed")
    assert name == "shot_00003_.png" and not (tree["root"] / "real" / name).exists()


def test_a_save_prefix_through_a_symlinked_folder_is_refused_before_anything_is_written(tree):
    for prefix in ("in_dir/shot", "out_dir/shot"):
        with pytest.raises(PathError, match="symlink"):
            save_target(tree["root"], prefix)
    assert sorted(p.name for p in tree["outside"].iterdir()) == ["secret.txt"]
    target, subfolder = save_target(tree["root"], "new/deeper/shot_%width%", size=(4, 3))
    assert (target.name, subfolder) == ("shot_4", "new/deeper") and (tree["root"] / "new" / "deeper").is_dir()


def test_load_image_does_not_list_or_load_images_linked_into_the_input_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("VORTEX_INPUT_DIR", str(tmp_path))
    Image.new("RGB", (2, 2), "red").save(tmp_path / "real.png")
    os.symlink(tmp_path / "real.png", tmp_path / "alias.png")
    assert list_input_images() == ["real.png"]
    pixels, _ = LoadImage().load_image("real.png")
    np.testing.assert_allclose(pixels[0, 0, 0], [1.0, 0.0, 0.0])
    with pytest.raises(PathError, match=r"'alias\.png' is a symlink"):
        LoadImage().load_image("alias.png")
    answer = LoadImage.VALIDATE_INPUTS("alias.png")
    assert isinstance(answer, str) and getattr(answer, "code", None) == "VE-700" and "symlink" in answer
    assert LoadImage.IS_CHANGED("alias.png") == "unreadable:alias.png"
    assert LoadImage.IS_CHANGED("real.png").count(":") == 2
