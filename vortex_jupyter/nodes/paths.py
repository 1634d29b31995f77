"""Where nodes read and write files, and the one function that joins untrusted names onto them.

Policy: every file name that comes from a graph (a LoadImage ``image`` param, a SaveImage
``filename_prefix``) is untrusted — graphs arrive from PNGs, collaborators and the internet.
``safe_join(root, name)`` is the only way node code turns such a name into a path. It accepts
relative names with ``/`` separators and rejects, with a ``PathError`` (VE-700) that names the
value, the root and the fix:

- empty names, NUL bytes and backslashes (``a\\b.png`` means a subfolder on Windows only);
- absolute paths (``/etc/passwd``) and drive letters (``C:x.png``);
- any ``..`` component, even one that would stay inside the root;
- names that resolve outside the root through a symlink (checked after ``resolve()``).

Roots come from the environment at call time (so tests and notebooks can switch them):
``VORTEX_INPUT_DIR`` (default ``./input``), ``VORTEX_OUTPUT_DIR`` (default ``./output``) and
``VORTEX_TEMP_DIR`` (default ``<system temp>/vortex-temp``), each made absolute.

>>> safe_join(Path("/srv/in"), "cats/tabby.png").as_posix().endswith("/srv/in/cats/tabby.png")
True
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from ..errors import PathError

__all__ = ["input_root", "output_root", "safe_join", "temp_root"]

_DRIVE = re.compile(r"^[A-Za-z]:")
#: Long enough for any real file name; longer names are an attack or a mistake.
_MAX_NAME = 1024


def _root(env: str, default: Path) -> Path:
    value = os.environ.get(env)
    return Path(value).expanduser().absolute() if value else default.absolute()


def input_root() -> Path:
    """Folder LoadImage reads from (``VORTEX_INPUT_DIR``, default ``./input``)."""
    return _root("VORTEX_INPUT_DIR", Path("input"))


def output_root() -> Path:
    """Folder SaveImage writes to (``VORTEX_OUTPUT_DIR``, default ``./output``)."""
    return _root("VORTEX_OUTPUT_DIR", Path("output"))


def temp_root() -> Path:
    """Folder PreviewImage writes to (``VORTEX_TEMP_DIR``, default ``<tmp>/vortex-temp``)."""
    return _root("VORTEX_TEMP_DIR", Path(tempfile.gettempdir()) / "vortex-temp")


def _reject(name: object, root: Path, why: str) -> PathError:
    return PathError(
        f"unsafe file name {name!r} for root {str(root)!r}: {why}",
        hint="use a relative name with '/' separators that stays inside the root, e.g. 'photos/cat.png'",
    )


def _check_name(root: Path, name: object) -> str:
    if not isinstance(name, str):
        raise _reject(name, root, f"expected a string, got {type(name).__name__}")
    if not name.strip():
        raise _reject(name, root, "the name is empty")
    if len(name) > _MAX_NAME:
        raise _reject(name[:40] + "...", root, f"the name is longer than {_MAX_NAME} characters")
    if "\x00" in name:
        raise _reject(name, root, "it contains a NUL byte")
    if "\\" in name:
        raise _reject(name, root, "it contains a backslash")
    if name.startswith("/") or os.path.isabs(name):
        raise _reject(name, root, "absolute paths are not allowed")
    if _DRIVE.match(name):
        raise _reject(name, root, "drive letters are not allowed")
    if ".." in name.split("/"):
        raise _reject(name, root, "'..' components are not allowed")
    return name


def safe_join(root: Path | str, name: object) -> Path:
    """``root / name`` resolved, or ``PathError`` if ``name`` could leave ``root``.

    The result is the resolved path (symlinks inside the root are followed); the file need
    not exist, so callers may use this for files they are about to create.
    """
    root_path = Path(root)
    checked = _check_name(root_path, name)
    real_root = root_path.resolve()
    target = (real_root / checked).resolve()
    if target != real_root and not target.is_relative_to(real_root):
        raise _reject(name, root_path, f"it resolves to {str(target)!r}, outside the root (a symlink?)")
    return target
