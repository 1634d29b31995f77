"""ControlNet files: their two key layouts, what a file is (from its header), and its config.

Torch-free: validation inspects ``.safetensors`` headers in the kernel. ComfyUI's
``comfy/controlnet.py load_controlnet`` accepts both layouts, as we do:

- original (ldm): the UNet's encoder half in ldm names (``time_embed``, ``label_emb`` for SDXL,
  ``input_blocks``, ``middle_block``; ``ldm.py``) plus ``input_hint_block.{0,2,...}`` (the hint
  embedding's convs), ``zero_convs.N.0`` (one per UNet skip) and ``middle_block_out.0``, all
  under ``control_model.`` (the released ``.pth``/``.safetensors`` files) or without a prefix;
- diffusers: ``ControlNetModel``'s own names (``conv_in``, ``down_blocks``, ``mid_block``,
  ``controlnet_cond_embedding.{conv_in,blocks.N,conv_out}``, ``controlnet_down_blocks.N``,
  ``controlnet_mid_block``).

A *diff* ControlNet (ldm layout with a ``difference`` key) stores its weights as differences
from the base UNet's (DiffControlNetLoader adds the MODEL's). ControlLoRA (``lora_controlnet``),
T2I adapters, union ("ControlNet++") and the transformer ControlNets of other families (Flux,
Qwen-Image, Stability's original SD3.5 layout) are recognised and refused with a clear ``ModelError``.

SD3 ControlNets (layout "mmdit") are diffusers ``SD3ControlNetModel`` files: ``pos_embed``,
``pos_embed_input`` (the VAE-encoded hint's patch embedding), ``time_text_embed``,
``context_embedder``, ``transformer_blocks.N`` (joint blocks) and ``controlnet_blocks.N``, as
ComfyUI's ``load_controlnet_mmdit`` reads them (the InstantX SD3 ControlNets and ours).

Family: what our ``vortex_configs`` metadata says, else from the config: "sdxl" with size
embeddings (``label_emb`` / ``add_embedding``), "sd1" without (SD2's 1024-wide and the SDXL
refiner's 1280-wide cross-attention are refused). Config: our
metadata, else a ``config.json`` next to the file (a diffusers download), else read off the
tensor shapes (``infer_config``; the number of attention heads cannot be read from weights:
SD1's 8 heads at 768-wide context, 64-channel heads otherwise, as SD2/SDXL use).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import ModelError
from . import ldm

Shapes = dict[str, tuple[int, ...]]
LDM_PREFIX = "control_model."
FAMILY_NAMES = {"sd1": "SD1", "sdxl": "SDXL", "sd3": "SD3"}
_ZERO = re.compile(r"(?:controlnet_down_blocks|zero_convs)\.(\d+)")


@dataclass(frozen=True)
class ControlNetInfo:
    """What a ControlNet file is: ``layout`` "ldm", "diffusers" or "mmdit" (SD3), the key
    ``prefix``, ``family`` ("sd1"/"sdxl"/"sd3"), whether it is a ``diff`` ControlNet, and its
    diffusers config."""

    layout: str
    prefix: str
    family: str
    diff: bool
    config: dict[str, Any] = field(default_factory=dict)


# ----------------------------------------------------------------------------- names


def _extra_names(config: dict[str, Any], n_zero: int) -> dict[str, str]:
    """The ControlNet-only modules: diffusers prefix -> ldm prefix."""
    hint = list(config.get("conditioning_embedding_out_channels") or (16, 32, 96, 256))
    out = {"controlnet_cond_embedding.conv_in": "input_hint_block.0",
           "controlnet_cond_embedding.conv_out": f"input_hint_block.{2 * (2 * (len(hint) - 1) + 1)}",
           "controlnet_mid_block": "middle_block_out.0"}
    for i in range(2 * (len(hint) - 1)):
        out[f"controlnet_cond_embedding.blocks.{i}"] = f"input_hint_block.{2 * (i + 1)}"
    for i in range(n_zero):
        out[f"controlnet_down_blocks.{i}"] = f"zero_convs.{i}.0"
    return out


def _trunk_config(config: dict[str, Any]) -> dict[str, Any]:
    return {**config, "up_block_types": []}  # ldm.py's UNet table without the decoder half


def controlnet_names(keys: Any, config: dict[str, Any]) -> dict[str, str]:
    """diffusers ControlNetModel key -> its ldm name (without ``control_model.``)."""
    keys = list(keys)
    n_zero = len({m.group(1) for k in keys if (m := _ZERO.match(k))})
    extra = _extra_names(config, n_zero)
    trunk = [k for k in keys if not k.startswith(("controlnet_", "controlnet_cond_embedding."))]
    out = ldm.unet_names(trunk, _trunk_config(config))
    for key in keys:
        if key not in out:
            module, param = key.rsplit(".", 1)
            if module not in extra:
                raise KeyError(f"no ldm name for ControlNet key {key!r}")
            out[key] = f"{extra[module]}.{param}"
    return out


def controlnet_to_ldm(state: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """A ControlNetModel state dict in the original layout, ``control_model.`` prefixed."""
    names = controlnet_names(state, config)
    return {LDM_PREFIX + names[k]: v for k, v in state.items()}


def controlnet_from_ldm(state: dict[str, Any], expected: list[str], config: dict[str, Any]
                        ) -> tuple[dict[str, Any], list[str]]:
    """The inverse for a state dict without prefix: (diffusers state dict, unused ldm keys)."""
    return ldm.from_ldm(state, controlnet_names(expected, config))


# ----------------------------------------------------------------------------- what a file is

_OTHERS = ((("lora_controlnet",), "a Control-LoRA"), (("control_add_embedding.", "task_embedding"),
           "a union ControlNet (ControlNet++)"), (("transformer_blocks.", "controlnet_blocks.",
           "pos_embed_input.", "controlnet_x_embedder."), "a transformer ControlNet of another family (Flux or "
           "Qwen-Image)"),
           (("adapter.", "body.0.", "conv_in.weight"), "a T2I adapter"))
_CONTEXT = {768: "SD1", 1024: "SD2.x", 2048: "SDXL", 1280: "SDXL refiner"}


def _unsupported(name: str, what: str) -> ModelError:
    return ModelError(f"control_net_name {name!r} is {what}, which vortex-jupyter does not run yet",
                      hint="use an SD1 or SDXL ControlNet (original or diffusers layout) or an "
                      "SD3 ControlNet in diffusers' SD3ControlNetModel layout")


def layout_of(name: str, shapes: Shapes) -> tuple[str, str]:
    """(layout, prefix) of a ControlNet's keys, or ModelError saying what else the file is."""
    if "controlnet_cond_embedding.conv_in.weight" in shapes:
        if "task_embedding" in shapes or any(k.startswith("control_add_embedding.") for k in shapes):
            raise _unsupported(name, "a union ControlNet (ControlNet++)")
        return "diffusers", ""
    if "pos_embed_input.proj.weight" in shapes and "controlnet_blocks.0.weight" in shapes:
        return _mmdit_layout(name, shapes)
    for prefix in (LDM_PREFIX, ""):
        if prefix + "zero_convs.0.0.weight" in shapes:
            if prefix + "task_embedding" in shapes:
                raise _unsupported(name, "a union ControlNet (ControlNet++)")
            return "ldm", prefix
    for markers, what in _OTHERS:
        if any(k.startswith(markers) for k in shapes):
            raise _unsupported(name, what)
    raise _unsupported(name, "not a ControlNet (no zero_convs.* or controlnet_cond_embedding.* keys)")


def _mmdit_layout(name: str, shapes: Shapes) -> tuple[str, str]:
    """An SD3 ControlNet ComfyUI's ``load_controlnet_mmdit`` reads, or what else it is."""
    if "transformer_blocks.0.adaLN_modulation.1.bias" in shapes:  # ComfyUI's load_controlnet_sd35
        raise _unsupported(name, "a Stability SD3.5 ControlNet in its original layout (ControlNetEmbedder)")
    if "pos_embed.proj.weight" not in shapes or "context_embedder.weight" not in shapes:
        raise _unsupported(name, "an SD3.5 ControlNet without its own patch and text embeddings")
    return "mmdit", ""


def inspect_controlnet(name: str, shapes: Shapes, meta: dict[str, str], config_json: Path | None = None
                       ) -> ControlNetInfo:
    """What the ControlNet file is (module docstring); ModelError for anything we cannot run."""
    layout, prefix = layout_of(name, shapes)
    declared = _metadata(meta)
    if layout == "mmdit":
        config = (declared.get("controlnet") or _sibling_config(config_json, "SD3ControlNetModel")
                  or sd3_config(shapes))
        return ControlNetInfo(layout, prefix, "sd3", False, dict(config))
    config = declared.get("controlnet") or _sibling_config(config_json) or infer_config(shapes, layout, prefix)
    family = declared.get("family") or _family(name, config)
    return ControlNetInfo(layout, prefix, str(family), "difference" in shapes, dict(config))


def _metadata(meta: dict[str, str]) -> dict[str, Any]:
    try:
        data = json.loads(meta.get("vortex_configs", "{}"))
    except ValueError as exc:
        raise ModelError(f"metadata 'vortex_configs' is not JSON: {exc}") from exc
    return data if isinstance(data, dict) and "controlnet" in data else {}


def _sibling_config(path: Path | None, cls: str = "ControlNetModel") -> dict[str, Any]:
    """A diffusers ``config.json`` beside the file (a ControlNet downloaded as a folder)."""
    if path is None or not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("_class_name") != cls:
        return {}
    return {k: v for k, v in data.items() if not k.startswith("_")}


def _family(name: str, config: dict[str, Any]) -> str:
    """SDXL: size embeddings (not the refiner's 1280-wide context); SD1: none, any context width
    but SD2's 1024 (files without our metadata may be narrower test models, as for UNets)."""
    adm = config.get("addition_embed_type") == "text_time"
    width = int(config.get("cross_attention_dim") or 768)
    if adm and width != 1280:
        return "sdxl"
    if not adm and width not in (1024, 1280, 2048):
        return "sd1"
    looks = _CONTEXT.get(width, f"{width}-wide") + (" with class embeddings" if adm else "")
    raise _unsupported(name, f"a ControlNet of another model family ({looks} cross-attention)")


def _first(shapes: Shapes, pattern: str) -> tuple[int, ...] | None:
    rx = re.compile(pattern)
    return next((s for k, s in shapes.items() if rx.fullmatch(k)), None)


# ----------------------------------------------------------------------------- names


def controlnet_path(name: object) -> Path:
    """The file ControlNetLoader reads for ``name``: a built-in tiny ControlNet's single file
    (built on first use), else the file in ComfyUI's ``controlnet`` folders, or ModelError."""
    from . import folders
    from .tiny_controlnet import TINY_CONTROLNET_NAMES, tiny_controlnet_single_file

    if not isinstance(name, str) or not name.strip():
        raise ModelError(f"control_net_name {name!r} is empty",
                         hint=f"pick a ControlNet file, e.g. {TINY_CONTROLNET_NAMES['sd1']!r}")
    for family, builtin in TINY_CONTROLNET_NAMES.items():
        if name == builtin:
            return tiny_controlnet_single_file(family)
    return folders.find("controlnet", name, "control_net_name", builtin=TINY_CONTROLNET_NAMES["sd1"])


def check_controlnet_name(name: object) -> None:
    """Validation (loads nothing, builds nothing): ModelError for a missing file, or a
    ``.safetensors`` that is no SD1/SDXL/SD3 ControlNet."""
    from . import families
    from .tiny_controlnet import TINY_CONTROLNET_NAMES

    if name in TINY_CONTROLNET_NAMES.values():
        return
    path = controlnet_path(name)
    if path.suffix.lower() in (".safetensors", ".sft"):
        inspect_controlnet(str(name), *families.read_header(path), path.with_name("config.json"))


# ----------------------------------------------------------------------------- config from shapes


def infer_config(shapes: Shapes, layout: str, prefix: str) -> dict[str, Any]:
    """A ControlNetModel config read off the tensor shapes (see the module docstring)."""
    levels = _levels_ldm(shapes, prefix) if layout == "ldm" else _levels_diffusers(shapes)
    channels = [lv["channels"] for lv in levels]
    attn = [lv["depth"] > 0 for lv in levels]
    get = (lambda k: shapes.get(prefix + k)) if layout == "ldm" else shapes.get
    context = _first(shapes, r".*attn2\.to_k\.weight")
    proj = _first(shapes, r".*\.proj_in\.weight")
    width = context[1] if context else 768
    cfg: dict[str, Any] = {
        "in_channels": (get("input_blocks.0.0.weight") or get("conv_in.weight") or (0, 4))[1],
        "block_out_channels": channels, "layers_per_block": levels[0]["layers"],
        "down_block_types": ["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in attn],
        "transformer_layers_per_block": [max(1, lv["depth"]) for lv in levels],
        "cross_attention_dim": width, "use_linear_projection": proj is not None and len(proj) == 2,
        "attention_head_dim": 8 if width == 768 else [max(1, c // 64) for c in channels],
        "conditioning_embedding_out_channels": _hint_channels(shapes, layout, prefix),
    }
    adm = get("label_emb.0.0.weight") or get("add_embedding.linear_1.weight")
    if adm is not None:
        cfg.update(addition_embed_type="text_time", addition_time_embed_dim=256,
                   projection_class_embeddings_input_dim=adm[1])
    return cfg


def sd3_config(shapes: Shapes) -> dict[str, Any]:
    """An SD3ControlNetModel config read off the tensor shapes: 64-channel heads (as every SD3
    model and ComfyUI's ``model_detection`` assume), the position table's side from its rows."""
    width, hint_in, patch, _ = shapes["pos_embed_input.proj.weight"]
    latent = shapes["pos_embed.proj.weight"][1]
    context = shapes["context_embedder.weight"]
    table = shapes.get("pos_embed.pos_embed")
    blocks = _count(shapes, r"transformer_blocks\.(\d+)\.")
    head = 64 if width % 64 == 0 else width
    return {"patch_size": patch, "in_channels": latent, "out_channels": latent, "num_layers": blocks,
            "attention_head_dim": head, "num_attention_heads": width // head,
            "joint_attention_dim": context[1], "caption_projection_dim": context[0],
            "pooled_projection_dim": shapes["time_text_embed.text_embedder.linear_1.weight"][1],
            "pos_embed_max_size": round(table[1] ** 0.5) if table else 96,
            "extra_conditioning_channels": hint_in - latent,
            "qk_norm": "rms_norm" if "transformer_blocks.0.attn.norm_q.weight" in shapes else None,
            "dual_attention_layers": sorted(int(m.group(1)) for k in shapes
                                            if (m := re.fullmatch(r"transformer_blocks\.(\d+)\.attn2\.to_q\.weight", k)))}


def _count(shapes: Shapes, pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in shapes if (m := rx.match(k))})


def _levels_ldm(shapes: Shapes, prefix: str) -> list[dict[str, int]]:
    p = re.escape(prefix)
    levels: list[dict[str, int]] = [{"channels": 0, "layers": 0, "depth": 0}]
    for n in range(1, _count(shapes, rf"{p}input_blocks\.(\d+)\.")):
        block = f"{prefix}input_blocks.{n}."
        if block + "0.op.weight" in shapes:  # a downsampler ends the level
            levels.append({"channels": 0, "layers": 0, "depth": 0})
            continue
        out = shapes.get(block + "0.out_layers.3.weight")
        if out is None:
            continue
        levels[-1]["channels"], levels[-1]["layers"] = out[0], levels[-1]["layers"] + 1
        depth = _count(shapes, rf"{re.escape(block)}1\.transformer_blocks\.(\d+)\.")
        levels[-1]["depth"] = max(levels[-1]["depth"], depth)
    return [lv for lv in levels if lv["layers"]]


def _levels_diffusers(shapes: Shapes) -> list[dict[str, int]]:
    out = []
    for b in range(_count(shapes, r"down_blocks\.(\d+)\.")):
        conv = shapes[f"down_blocks.{b}.resnets.0.conv1.weight"]
        out.append({"channels": conv[0], "layers": _count(shapes, rf"down_blocks\.{b}\.resnets\.(\d+)\."),
                    "depth": _count(shapes, rf"down_blocks\.{b}\.attentions\.0\.transformer_blocks\.(\d+)\.")})
    return out


def _hint_channels(shapes: Shapes, layout: str, prefix: str) -> list[int]:
    if layout == "diffusers":
        n = _count(shapes, r"controlnet_cond_embedding\.blocks\.(\d+)\.")
        convs = ["controlnet_cond_embedding.conv_in.weight",
                 *(f"controlnet_cond_embedding.blocks.{i}.weight" for i in range(n))]
    else:
        n = _count(shapes, rf"{re.escape(prefix)}input_hint_block\.(\d+)\.")
        convs = [f"{prefix}input_hint_block.{2 * i}.weight" for i in range(n - 1)]
    outs = [shapes[c][0] for c in convs if c in shapes]
    return outs[0:1] + outs[2::2] if outs else [16, 32, 96, 256]
