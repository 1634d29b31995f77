"""Where nodes read and write files, and how untrusted names are opened under those folders.

Policy: every file name that comes from a graph (a LoadImage ``image`` param, a SaveImage
``filename_prefix``) is untrusted — graphs arrive from PNGs, collaborators and the internet.
Names are relative, with ``/`` separators; ``PathError`` (VE-700), naming the value, the root
and the fix, rejects:

- empty names, NUL bytes and backslashes (``a\\b.png`` means a subfolder on Windows only);
- absolute paths (``/etc/passwd``) and drive letters (``C:x.png``);
- any ``..`` component, even one that would stay inside the root;
- any symlink below the root, wherever it sits in the name (``photos -> /etc``, ``cat.png ->
  ../secret``), even one that points back inside the root.

The root itself is trusted: it comes from the operator, and it may be a symlink
(``output -> /data/out``); it is resolved once per call. Everything below it is reached
without following a symlink, *at the moment of use*: the name is walked component by
component from a file descriptor of the root (``openat`` with ``O_DIRECTORY | O_NOFOLLOW``
per folder, ``mkdir`` at a folder fd for missing ones when writing, ``O_NOFOLLOW`` on the
file, ``O_CREAT | O_EXCL`` for new outputs). Checking a path and then opening it would let a
folder swapped for a symlink in between lead outside the root (issue 10, item 5: 1 save in
256 escaped that way); a walk of fds cannot be redirected. ``openat2(RESOLVE_BENEATH)``
would save a few system calls, but needs Linux 5.6 and is refused by some sandboxes; one
code path, tested under a real concurrent swapper, is worth more than the calls. (A folder
*renamed* out of the root while a save holds its fd is not covered: the mover needs write
access out there anyway.) Where the platform has no ``dir_fd`` support (Windows), names are
checked with ``safe_join`` and opened by path.

Model files are not opened through here: people link checkpoints into the models folder on
purpose, and ``nodes/diffusion/folders.py`` only checks the name's syntax (``_check_name``).

The API: ``open_under(root, name, mode)`` opens a file (``"rb"``, or ``"xb"`` to create a new
one and its folders); ``open_folder(root, subfolder)`` gives a ``Folder`` to list, create
(exclusively) and remove files in; ``stat_under`` and ``makedirs_under`` do what they say;
``path_under(root, *names)`` is the path to show in messages and results; ``safe_join`` is
the early check (syntax, and symlinks that lead outside, with the ``resolve()``d path).

Roots come from the environment at call time (so tests and notebooks can switch them):
``VORTEX_INPUT_DIR`` (default ``./input``), ``VORTEX_OUTPUT_DIR`` (default ``./output``) and
``VORTEX_TEMP_DIR`` (default ``<system temp>/vortex-temp``), each made absolute.

>>> import tempfile
>>> root = Path(tempfile.mkdtemp())
>>> with open_under(root, "cats/tabby.txt", "xb") as fh:
...     _ = fh.write(b"meow")
>>> with open_under(root, "cats/tabby.txt") as fh:
...     fh.read()
b'meow'
>>> path_under(root, "cats", "tabby.txt") == root.resolve() / "cats" / "tabby.txt"
True
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO, Literal

from ..errors import PathError

__all__ = ["Folder", "input_root", "makedirs_under", "open_folder", "open_under", "output_root", "path_under",
           "safe_join", "stat_under", "temp_root"]

_DRIVE = re.compile(r"^[A-Za-z]:")
#: Long enough for any real file name; longer names are an attack or a mistake.
_MAX_NAME = 1024
#: Whether this platform can open relative to a folder fd (Linux, macOS, BSDs; not Windows).
_AT = {os.open, os.mkdir, os.stat, os.unlink} <= os.supports_dir_fd and os.listdir in os.supports_fd
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_DIR_FLAGS = os.O_RDONLY | _DIRECTORY | _NOFOLLOW
# O_NONBLOCK: opening a FIFO someone left in the input folder must not hang the node.
_FLAGS = {"rb": os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | _NOFOLLOW,
          "xb": os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW}
#: What refusing to follow a symlink looks like: ELOOP (Linux, macOS on the file), ENOTDIR
#: (Linux, O_DIRECTORY on a link), EMLINK (FreeBSD).
_REFUSED = (errno.ELOOP, errno.ENOTDIR, errno.EMLINK)
Mode = Literal["rb", "xb"]


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


def _reject(name: object, root: Path, why: str, hint: str | None = None) -> PathError:
    return PathError(
        f"unsafe file name {name!r} for root {str(root)!r}: {why}",
        hint=hint or "use a relative name with '/' separators that stays inside the root, e.g. 'photos/cat.png'",
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


def _parts(root: Path, name: object) -> list[str]:
    """The components of a checked name, without empty and ``.`` ones (``a/./b`` is ``a/b``)."""
    return [p for p in _check_name(root, name).split("/") if p not in ("", ".")]


def _symlink(name: object, root: Path, link: str, *, swapped: bool = False) -> PathError:
    what = f"{link!r} changed while it was opened (a symlink swapped in?)" if swapped else f"{link!r} is a symlink"
    return _reject(name, root, f"{what}, and nothing below the root is opened through a symlink (one could lead "
                   "outside the root)",
                   hint="copy the file or folder into the root instead of linking it (the root itself may be a "
                   "symlink: point VORTEX_INPUT_DIR / VORTEX_OUTPUT_DIR at the linked folder)")


def safe_join(root: Path | str, name: object) -> Path:
    """``root / name`` resolved, or ``PathError`` if ``name`` could leave ``root``.

    The early check: the name's syntax, and symlinks that lead outside (the result is the
    ``resolve()``d path; the file need not exist). Open files with ``open_under``, which
    follows no symlink below the root at all, whatever happened since this check.
    """
    root_path = Path(root)
    checked = _check_name(root_path, name)
    real_root = root_path.resolve()
    try:
        target = (real_root / checked).resolve()
    except OSError:  # a symlink on the way vanished mid-resolve: the open decides (open_under)
        target = real_root / checked
    if target != real_root and not target.is_relative_to(real_root):
        raise _reject(name, root_path, f"it resolves to {str(target)!r}, outside the root (a symlink?)")
    return target


def path_under(root: Path | str, *names: str) -> Path:
    """The path of ``names`` (joined with ``/``; empty ones skipped) under the resolved root, for
    messages and results; ``PathError`` for a name that could leave the root. Opens nothing."""
    root_path = Path(root)
    joined = "/".join(n for n in names if n)
    return root_path.resolve().joinpath(*_parts(root_path, joined)) if joined else root_path.resolve()


class Folder:
    """An open folder under a root, reached without following any symlink below the root.

    Responsibilities: list, open (or exclusively create) and remove files *in this folder*,
    by plain file names (no ``/``), never through a symlink. A context manager: closing it
    closes its fd; files it opened stay open. Made by ``open_folder``.
    """

    def __init__(self, root: Path, parts: list[str], fd: int | None, shown: object) -> None:
        self.root = root  #: the resolved root
        self.subfolder = "/".join(parts)  #: ``""`` at the root (ComfyUI's "subfolder" in results)
        self.path = root.joinpath(*parts)  #: for messages
        self._fd = fd  # None: no dir_fd support on this platform, paths are used
        self._shown = shown

    def __enter__(self) -> Folder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _at(self, leaf: str) -> tuple[str, int | None]:
        if "/" in leaf or leaf in ("", ".", ".."):
            raise _reject(leaf, self.path, "expected a plain file name, without '/'")
        return (leaf, self._fd) if self._fd is not None else (str(self.path / leaf), None)

    def names(self) -> list[str]:
        """The names of the entries in this folder."""
        return os.listdir(self._fd if self._fd is not None else self.path)

    def stat(self, leaf: str) -> os.stat_result:
        """``lstat`` of ``leaf``: a symlink is reported as one, never followed."""
        target, dir_fd = self._at(leaf)
        return os.stat(target, dir_fd=dir_fd, follow_symlinks=False)

    def open(self, leaf: str, mode: Mode = "rb") -> BinaryIO:
        """``leaf`` opened for reading (``"rb"``: a regular file) or created new (``"xb"``:
        ``FileExistsError`` if anything has that name, a symlink included)."""
        target, dir_fd = self._at(leaf)
        try:
            fd = os.open(target, _FLAGS[mode], 0o666, dir_fd=dir_fd)
        except OSError as exc:
            if exc.errno in _REFUSED and self._is_link(leaf):
                raise _symlink(self._shown, self.root, _joined(self.subfolder, leaf)) from None
            if exc.errno == errno.ENOENT and mode == "xb":  # only the folder itself can be missing
                raise FileNotFoundError(errno.ENOENT, f"the folder {self.subfolder or '.'!r} was removed while "
                                        f"{leaf!r} was being created in it", str(self.path / leaf)) from None
            raise OSError(exc.errno, exc.strerror, str(self.path / leaf)) from None
        if mode == "xb":
            return os.fdopen(fd, "wb")
        kind = os.fstat(fd).st_mode
        if not stat.S_ISREG(kind):
            os.close(fd)
            code = errno.EISDIR if stat.S_ISDIR(kind) else errno.EINVAL
            raise OSError(code, f"not a regular file: {_joined(self.subfolder, leaf)!r}", str(self.path / leaf))
        return os.fdopen(fd, "rb")

    def unlink(self, leaf: str) -> None:
        """Remove ``leaf`` from this folder if it is there (a symlink itself, never its target)."""
        target, dir_fd = self._at(leaf)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(target, dir_fd=dir_fd)

    def _is_link(self, leaf: str) -> bool:
        try:
            return stat.S_ISLNK(self.stat(leaf).st_mode)
        except OSError:
            return False


def _joined(subfolder: str, leaf: str) -> str:
    return f"{subfolder}/{leaf}" if subfolder else leaf


def open_folder(root: Path | str, subfolder: str = "", *, create: bool = False, shown: object = None) -> Folder:
    """The folder ``subfolder`` (``""``: the root) under ``root``, walked from a root fd one
    component at a time, following no symlink. ``create``: make the root and missing folders
    (a folder made by a parallel save meanwhile is fine). ``PathError`` for an unsafe name or a
    symlink on the way; ``FileNotFoundError`` / ``NotADirectoryError`` as the file system says.
    ``shown``: the name to quote in errors (default ``subfolder``)."""
    root_path = Path(root)
    shown = subfolder if shown is None else shown
    parts = _parts(root_path, subfolder) if subfolder else []
    real = root_path.resolve()  # the root may be a symlink: followed here, once
    if create:
        real.mkdir(parents=True, exist_ok=True)
    if not _AT:
        safe_join(root_path, "/".join(parts) or ".")
        if create:
            real.joinpath(*parts).mkdir(parents=True, exist_ok=True)
        return Folder(real, parts, None, shown)
    fd = os.open(real, os.O_RDONLY | _DIRECTORY)
    try:
        for depth, part in enumerate(parts):
            try:
                below = _enter(fd, part, create)
            except OSError as exc:
                raise _explained(exc, fd, parts[:depth + 1], shown, root_path, real) from None
            os.close(fd)
            fd = below
    except BaseException:
        os.close(fd)
        raise
    return Folder(real, parts, fd, shown)


#: How often a missing folder is made again when it vanishes between ``mkdir`` and ``open``.
_MKDIR_TRIES = 8


def _enter(fd: int, part: str, create: bool) -> int:
    for _ in range(_MKDIR_TRIES if create else 1):
        try:
            return os.open(part, _DIR_FLAGS, dir_fd=fd)
        except FileNotFoundError:
            if not create:
                raise
        # made meanwhile by a parallel save (or an attacker's symlink: the open refuses that)
        with contextlib.suppress(FileExistsError):
            os.mkdir(part, dir_fd=fd)
    return os.open(part, _DIR_FLAGS, dir_fd=fd)


def _explained(exc: OSError, fd: int, parts: list[str], shown: object, root: Path, real: Path) -> Exception:
    """What a failed step of the walk (into ``parts[-1]``, from ``fd``) means: a symlink, or one
    swapped away since (PathError), else the OSError with the full path."""
    if exc.errno in _REFUSED:
        try:
            kind = os.stat(parts[-1], dir_fd=fd, follow_symlinks=False).st_mode
        except OSError:
            kind = 0  # gone since
        if stat.S_ISLNK(kind) or stat.S_ISDIR(kind) or not kind:  # not a folder a moment ago: swapped
            return _symlink(shown, root, "/".join(parts), swapped=not stat.S_ISLNK(kind))
    return type(exc)(exc.errno, exc.strerror, str(real.joinpath(*parts)))


def _split(root: Path, name: object) -> tuple[str, str]:
    parts = _parts(root, name)
    if not parts:
        raise _reject(name, root, "it names the root folder, not a file")
    return "/".join(parts[:-1]), parts[-1]


def open_under(root: Path | str, name: object, mode: Mode = "rb") -> BinaryIO:
    """The file ``name`` under ``root``, opened without following any symlink below the root:
    ``"rb"`` reads a regular file; ``"xb"`` creates a new one (and its missing folders),
    ``FileExistsError`` if the name is taken. ``PathError`` (VE-700) for an unsafe name."""
    root_path = Path(root)
    subfolder, leaf = _split(root_path, name)
    with open_folder(root_path, subfolder, create=mode == "xb", shown=name) as folder:
        return folder.open(leaf, mode)


def stat_under(root: Path | str, name: object) -> os.stat_result:
    """``lstat`` of ``name`` under ``root``, reached as ``open_under`` would; ``PathError`` if the
    name, or anything on the way, is a symlink."""
    root_path = Path(root)
    subfolder, leaf = _split(root_path, name)
    with open_folder(root_path, subfolder, shown=name) as folder:
        info = folder.stat(leaf)
    if stat.S_ISLNK(info.st_mode):
        raise _symlink(name, root_path, _joined(subfolder, leaf))
    return info


def makedirs_under(root: Path | str, name: str) -> Path:
    """Make the folder ``name`` (and the root, and every folder on the way) under ``root``,
    following no symlink below the root; returns its path (``path_under``)."""
    with open_folder(root, name, create=True) as folder:
        return folder.path
