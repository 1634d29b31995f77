"""ComfyUI's model folders: which folders hold each kind of model file, and ``extra_model_paths.yaml``.

Torch-free: the kernel uses it to fill the loader nodes' combo lists and to validate names.

Policy (ComfyUI's ``folder_paths.py`` and ``utils/extra_config.py``, matched on purpose):

- Each *kind* (``checkpoints``, ``vae``, ``loras``, ``text_encoders``, ``diffusion_models``,
  ``embeddings``, ``upscale_models``, ``controlnet``, ``clip_vision``, ...) has default folders
  under the models root (``models.models_root()``: ``$VORTEX_MODELS_DIR``, default
  ``~/.cache/vortex-jupyter/models``), e.g. ``text_encoders`` -> ``text_encoders/`` and ``clip/``,
  ``diffusion_models`` -> ``unet/`` and ``diffusion_models/``. The legacy kind names ``clip`` and
  ``unet`` mean ``text_encoders`` and ``diffusion_models``, as in ComfyUI.
- ``extra_model_paths.yaml`` adds folders, in ComfyUI's format: named sections, each with an
  optional ``base_path`` (``~`` and ``$VARS`` expanded; relative to the yaml's folder), an
  optional ``is_default`` (its folders go *first*), and per kind one folder or several on
  separate lines (a YAML ``|`` block), each relative to ``base_path`` (or to the yaml's folder
  when there is none) unless absolute. Both the ``a1111:`` and the ``comfyui:`` section styles
  of ComfyUI's example work unchanged.
- Which yaml files: ``$VORTEX_EXTRA_MODEL_PATHS`` (one or more paths separated by ``os.pathsep``;
  set but empty = none) when set; otherwise the first that exists of
  ``<models root>/extra_model_paths.yaml`` and ``./extra_model_paths.yaml``.
- Listing a kind: every file under its folders, recursively (symlinks followed, ``.git``
  skipped), with a ``/``-separated name relative to its folder, kept when its extension is one
  ComfyUI lists for that kind (``.safetensors``, ``.ckpt``, ``.pt``, ``.pt2``, ``.bin``, ``.pth``,
  ``.pkl``, ``.sft`` for model kinds); the union over folders, sorted. ``checkpoints`` also
  lists diffusers folders (a folder with ``model_index.json``), which we can load too.
- Finding a file: the name is checked lexically (relative, ``/`` separators, no ``..``, no
  backslash, no NUL; see ``nodes.paths``) and then looked up in each folder in order; the first
  existing file wins. Symlinks inside a model folder are followed wherever they point, as in
  ComfyUI: the folder's contents are the user's own, only the *name* comes from a graph.
  A missing file is a ``ModelNotFoundError`` (a ``ModelError``, VE-800; validation reports it as
  VE-117, a missing file) naming every folder searched and the fix.

State: listings are cached per kind and re-read when a folder's (or subfolder's) mtime
changes, as ComfyUI does; parsed yaml files are cached by (mtime, size).

>>> canonical("clip"), KINDS["diffusion_models"].defaults
('text_encoders', ('unet', 'diffusion_models'))
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import ModelError, ModelNotFoundError, PathError
from ..paths import _check_name
from .models import models_root

__all__ = ["KINDS", "canonical", "config_files", "find", "folders", "list_names", "parse_extra_paths"]

log = logging.getLogger("vortex_jupyter.models")

#: ComfyUI's ``supported_pt_extensions``.
PT = frozenset({".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"})
YAML_NAME = "extra_model_paths.yaml"
ENV = "VORTEX_EXTRA_MODEL_PATHS"


@dataclass(frozen=True)
class Kind:
    name: str
    defaults: tuple[str, ...]  # sub-folders of the models root, in search order
    extensions: frozenset[str]  # empty: any file


def _kinds() -> dict[str, Kind]:
    table: dict[str, tuple[str, ...]] = {
        "checkpoints": ("checkpoints",), "loras": ("loras",), "vae": ("vae",),
        "text_encoders": ("text_encoders", "clip"), "diffusion_models": ("unet", "diffusion_models"),
        "clip_vision": ("clip_vision",), "style_models": ("style_models",), "embeddings": ("embeddings",),
        "vae_approx": ("vae_approx",), "controlnet": ("controlnet", "t2i_adapter"), "gligen": ("gligen",),
        "upscale_models": ("upscale_models",), "latent_upscale_models": ("latent_upscale_models",),
        "hypernetworks": ("hypernetworks",), "photomaker": ("photomaker",), "model_patches": ("model_patches",),
        "audio_encoders": ("audio_encoders",), "background_removal": ("background_removal",),
        "frame_interpolation": ("frame_interpolation",), "geometry_estimation": ("geometry_estimation",),
        "optical_flow": ("optical_flow",), "detection": ("detection",),
    }
    kinds = {name: Kind(name, subs, PT) for name, subs in table.items()}
    kinds["configs"] = Kind("configs", ("configs",), frozenset({".yaml"}))
    kinds["classifiers"] = Kind("classifiers", ("classifiers",), frozenset({""}))
    kinds["diffusers"] = Kind("diffusers", ("diffusers",), frozenset({"folder"}))
    return kinds


KINDS: dict[str, Kind] = _kinds()
_LEGACY = {"unet": "diffusion_models", "clip": "text_encoders"}


def canonical(kind: str) -> str:
    """ComfyUI's ``map_legacy``: ``unet`` -> ``diffusion_models``, ``clip`` -> ``text_encoders``."""
    return _LEGACY.get(kind, kind)


# ----------------------------------------------------------------------------- yaml


def config_files() -> list[Path]:
    """The ``extra_model_paths.yaml`` files in effect (see the module docstring for the order)."""
    env = os.environ.get(ENV)
    if env is not None:
        return [Path(p).expanduser() for p in env.split(os.pathsep) if p.strip()]
    for candidate in (models_root() / YAML_NAME, Path.cwd() / YAML_NAME):
        if candidate.is_file():
            return [candidate]
    return []


_YAML_CACHE: dict[Path, tuple[tuple[int, int], list[tuple[str, Path, bool]]]] = {}


def parse_extra_paths(path: Path) -> list[tuple[str, Path, bool]]:
    """``(kind, folder, is_default)`` for every folder a yaml file adds, in file order."""
    try:
        st = path.stat()
    except OSError as exc:
        raise ModelError(f"{YAML_NAME} {str(path)!r} cannot be read: {exc.strerror or exc}",
                         hint=f"fix the path in ${ENV}, or unset it") from exc
    stamp = (st.st_mtime_ns, st.st_size)
    hit = _YAML_CACHE.get(path)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    entries = list(_entries(path, _load_yaml(path)))
    _YAML_CACHE[path] = (stamp, entries)
    return entries


def _load_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ModelError(f"{YAML_NAME} {str(path)!r} is not valid YAML: {exc}",
                         hint="compare it with ComfyUI's extra_model_paths.yaml.example") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise _bad(path, f"the top level is a {type(data).__name__}, not named sections")
    return data


def _bad(path: Path, why: str) -> ModelError:
    return ModelError(f"{YAML_NAME} {str(path)!r}: {why}",
                      hint="each section maps kinds (checkpoints, vae, loras, ...) to folders, e.g. "
                           "'comfyui:\\n  base_path: ~/ComfyUI/\\n  checkpoints: models/checkpoints/'")


def _entries(path: Path, data: dict[str, Any]) -> Any:
    here = path.absolute().parent
    for section, conf in data.items():
        if conf is None:  # an empty section, as ComfyUI allows
            continue
        if not isinstance(conf, dict):
            raise _bad(path, f"section {section!r} is a {type(conf).__name__}, not a mapping")
        conf = dict(conf)
        base = _base_path(path, section, conf.pop("base_path", None), here)
        is_default = bool(conf.pop("is_default", False))
        for kind, value in conf.items():
            if not isinstance(value, str):  # ComfyUI splits the value on newlines
                raise _bad(path, f"section {section!r}: {kind!r} is {value!r}; give a folder, or several "
                                 "on separate lines of a '|' block")
            for line in value.split("\n"):
                if line:
                    yield kind, _folder(line, base, here), is_default


def _base_path(path: Path, section: str, raw: Any, here: Path) -> Path | None:
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise _bad(path, f"section {section!r}: base_path is {raw!r}, not a path")
    base = Path(os.path.expandvars(os.path.expanduser(raw)))
    return base if base.is_absolute() else Path(os.path.abspath(here / base))


def _folder(line: str, base: Path | None, here: Path) -> Path:
    # ComfyUI joins (an absolute line wins), then normalises; only base_path gets ~ and $VARS.
    if base is not None:
        return Path(os.path.normpath(os.path.join(base, line)))
    if os.path.isabs(line):
        return Path(os.path.normpath(line))
    return Path(os.path.normpath(os.path.abspath(os.path.join(here, line))))


# ----------------------------------------------------------------------------- folders


def folders(kind: str, *, strict: bool = True) -> list[Path]:
    """The folders searched for ``kind``, in order: the models root's defaults, then the yaml
    folders (``is_default`` ones first), as ComfyUI's ``add_model_folder_path`` orders them.
    ``strict=False`` skips a broken yaml (logged) instead of raising, for combo lists."""
    kind = canonical(kind)
    root = models_root()
    known = KINDS.get(kind)
    out = [root / sub for sub in known.defaults] if known else []
    for path in config_files():
        try:
            entries = parse_extra_paths(path)
        except ModelError as exc:
            if strict:
                raise
            log.warning("ignoring %s: %s", path, exc.message)
            continue
        for entry_kind, folder, is_default in entries:
            if canonical(entry_kind) == kind:
                _add(out, folder, is_default)
    return out


def _add(paths: list[Path], folder: Path, is_default: bool) -> None:
    if folder in paths:
        if is_default and paths[0] != folder:
            paths.remove(folder)
            paths.insert(0, folder)
    elif is_default:
        paths.insert(0, folder)
    else:
        paths.append(folder)


# ----------------------------------------------------------------------------- listing

_LIST_CACHE: dict[str, tuple[tuple[Path, ...], list[str], dict[str, float]]] = {}


def list_names(kind: str) -> list[str]:
    """Every loadable name of ``kind`` (sorted, ``/`` separators); never raises."""
    kind = canonical(kind)
    where = tuple(folders(kind, strict=False))
    hit = _LIST_CACHE.get(kind)
    if hit is not None and hit[0] == where and _unchanged(hit[2], where):
        return list(hit[1])
    spec = KINDS.get(kind, Kind(kind, (), frozenset()))
    names: set[str] = set()
    stamps: dict[str, float] = {}
    for folder in where:
        names.update(_walk(folder, spec, stamps))
    result = sorted(names)
    _LIST_CACHE[kind] = (where, result, stamps)
    return list(result)


def _unchanged(stamps: dict[str, float], where: tuple[Path, ...]) -> bool:
    for folder in where:  # a folder that appeared since the listing
        if str(folder) not in stamps and folder.is_dir():
            return False
    try:
        return all(os.path.getmtime(d) == t for d, t in stamps.items())
    except OSError:
        return False


def _walk(folder: Path, spec: Kind, stamps: dict[str, float]) -> list[str]:
    if not folder.is_dir():
        return []
    found: list[str] = []
    seen: set[str] = set()  # real paths of visited folders: a symlink loop ends here
    with_folders = spec.name == "checkpoints"
    for dirpath, subdirs, files in os.walk(folder, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            subdirs[:] = []
            continue
        seen.add(real)
        stamps[dirpath] = os.path.getmtime(dirpath)
        rel_dir = os.path.relpath(dirpath, folder)
        if with_folders and rel_dir != "." and "model_index.json" in files:
            found.append(Path(rel_dir).as_posix())  # a diffusers pipeline: the folder is the model
            subdirs[:] = []
            continue
        subdirs[:] = [d for d in subdirs if d != ".git"]
        found.extend(Path(rel_dir, f).as_posix() if rel_dir != "." else f
                     for f in files if _wanted(f, spec.extensions))
    return found


def _wanted(file_name: str, extensions: frozenset[str]) -> bool:
    return not extensions or os.path.splitext(file_name)[1].lower() in extensions


# ----------------------------------------------------------------------------- finding


def check_name(kind: str, name: object, field: str) -> str:
    """``name`` if it is a safe relative name, else ModelError naming ``field``."""
    try:
        return _check_name(models_root() / canonical(kind), name)
    except PathError as exc:
        raise ModelError(f"{field} {name!r} is not a safe name: {exc.message}",
                         hint=f"name a file inside the {canonical(kind)} folders, with '/' separators") from exc


def find(kind: str, name: object, field: str, *, allow_folders: bool = False, builtin: str | None = None) -> Path:
    """The file ``name`` of ``kind`` in the first folder that has it, or ModelError saying where
    we looked and what is there (``builtin``: a built-in name to offer first). ``allow_folders``:
    a diffusers folder (``model_index.json``) counts too (checkpoints)."""
    checked = check_name(kind, name, field)
    searched = folders(kind)
    for folder in searched:
        path = folder / checked
        if path.is_file() or (allow_folders and (path / "model_index.json").is_file()):
            return path
        if path.is_symlink() and not path.exists():
            log.warning("%s exists but does not link anywhere, skipping", path)
    raise missing(kind, checked, field, searched, builtin)


def missing(kind: str, name: str, field: str, searched: list[Path], builtin: str | None = None
            ) -> ModelNotFoundError:
    kind = canonical(kind)
    where = ", ".join(str(f) for f in searched) or "(no folders)"
    first = searched[0] if searched else models_root() / kind
    available = ([builtin] if builtin else []) + [n for n in list_names(kind) if n != builtin]
    return ModelNotFoundError(f"{field} {name!r} not found; searched {where}; available: {listed(available)}",
                      hint=f"put the file in {first} (VORTEX_MODELS_DIR), or add your ComfyUI folders "
                           f"in {YAML_NAME}")


def listed(names: list[str], shown: int = 10) -> str:
    if not names:
        return "none"
    more = f" (and {len(names) - shown} more)" if len(names) > shown else ""
    return ", ".join(repr(n) for n in names[:shown]) + more
