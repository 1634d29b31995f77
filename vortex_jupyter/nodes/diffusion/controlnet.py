"""ControlNets: the CONTROL_NET value, what the apply nodes store on a CONDITIONING, and how the
sampler evaluates it, with ComfyUI's semantics (``nodes.py`` ControlNetApply*, ``comfy/controlnet.py``,
``comfy/samplers.py``).

Values:

- CONTROL_NET (``ControlNetHandle``): a file's ``ControlNetModel`` (SD3: ``SD3ControlNetModel``,
  ``controlnet_sd3.py``) as a ``Component`` (loaded on demand through the memory arbiter, its
  own entry), its family ("sd1"/"sdxl"/"sd3") and options
  (SetUnionControlNetType's ``control_type``; ComfyUI's global average pooling for files named
  ``*_shuffle``).
- An applied control (``AppliedControl``), stored under ``options["control"]`` of each
  conditioning entry: the net, the hint image (``[B, C, H, W]`` in [0, 1]), ``strength``, the
  ``(start_percent, end_percent)`` window and the control that entry had before
  (``previous``: chained controls add up). ControlNetApplyAdvanced gives all entries of both
  sides that had the same previous control ONE object, so they still batch together;
  ControlNetApply (the old node) makes one per entry and marks it ``control_apply_to_uncond``.
  Strength 0 returns the conditioning unchanged.

At sampling (``bind_controls``, from ``conds.process``): entries of the other sides without a
control, outside areas, get the positive's ``control_apply_to_uncond`` controls (ComfyUI's
``apply_empty_x_to_equal_area``); each applied control becomes a ``RunControl`` for this run
(its sigma window from ``percent_to_sigma``, ComfyUI's ``pre_run``). At each model call of a
batch of entries sharing one control (``conds.calc_cond_batch`` groups by it), the UNet apply
function asks ``RunControl.residuals``: the previous control's residuals, plus, while
``sigma_end <= sigma <= sigma_start``, this net's on the same scaled input, timestep, context
(and SDXL's pooled text + size ids) as the UNet, the hint resized to the latent x 8
(nearest-exact, centre crop) and repeated over the batch, times ``strength``. They are added
to the UNet's skip connections and middle block (diffusers' ``down_block_additional_residuals``
/ ``mid_block_additional_residual``, exactly ComfyUI's ``control['output'/'middle']``). An SD3
ControlNet's residuals go to the MMDiT's joint blocks instead (``RunControl.blocks``,
``controlnet_sd3.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from ...errors import ModelError
from ...workers.arbiter import MemoryArbiter
from ..context import current
from .components import Component, ModelHandle, device_and_dtype, quiet_progress
from .conditioning_nodes import _pairs
from .controlnet_keys import (
    FAMILY_NAMES,
    ControlNetInfo,
    controlnet_from_ldm,
    controlnet_path,
    inspect_controlnet,
)

__all__ = ["UNION_TYPES", "AppliedControl", "ControlNetHandle", "RunControl", "apply_controlnet",
           "apply_controlnet_advanced", "bind_controls", "broadcast_hint", "check_families", "load_controlnet",
           "set_union_type"]

#: ComfyUI's ``UNION_CONTROLNET_TYPES`` (``comfy/cldm/control_types.py``), SetUnionControlNetType's list.
UNION_TYPES = {"openpose": 0, "depth": 1, "hed/pidi/scribble/ted": 2, "canny/lineart/anime_lineart/mlsd": 3,
               "normal": 4, "segment": 5, "tile": 6, "repaint": 7}
COMPRESSION = 8  # latent pixel -> image pixels, for SD1/SDXL ControlNets
Residuals = tuple[list[torch.Tensor], torch.Tensor]


@dataclass(frozen=True, eq=False)
class ControlNetHandle:  # CONTROL_NET
    name: str
    module: Component
    family: str
    global_pool: bool = False
    #: ComfyUI's ``extra_args`` (SetUnionControlNetType's ``control_type``); only union
    #: ControlNets read it, and we do not run those yet.
    extra: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return f"<CONTROL_NET {self.name} ({FAMILY_NAMES.get(self.family, self.family)})>"


# ----------------------------------------------------------------------------- loading


def load_controlnet(name: str, model: ModelHandle | None = None, arbiter: MemoryArbiter | None = None
                    ) -> ControlNetHandle:
    """ControlNetLoader (``model`` None) / DiffControlNetLoader: a CONTROL_NET handle at once;
    the module loads through the arbiter when sampling first needs it."""
    from .split import peek

    path = controlnet_path(name)
    info = inspect_controlnet(name, *peek(path), path.with_name("config.json"))
    if info.diff and model is None:  # ComfyUI warns and loads garbage; we say what to do
        raise ModelError(f"control_net_name {name!r} is a diff ControlNet: its weights are differences from "
                         "a base model's", hint="load it with DiffControlNetLoader and connect that MODEL")
    device, dtype = device_and_dtype()
    key = f"{path.resolve()}|{path.stat().st_mtime_ns}|{device}|{dtype}|controlnet"
    if info.diff and model is not None:
        key += f"|diff:{model.unet.key}"

    def load() -> Any:
        net = build_module(name, path, info, model if info.diff else None)
        return net.to(device=device, dtype=dtype).eval().requires_grad_(False)

    pool = Path(name).stem.endswith(("_shuffle", "_shuffle_fp16"))  # ComfyUI's rule, by file name
    return ControlNetHandle(name, Component(key, load, path.stat().st_size, arbiter), info.family, pool)


def build_module(name: str, path: Path, info: ControlNetInfo, model: ModelHandle | None = None) -> Any:
    """The file's ControlNetModel (SD3ControlNetModel) on the CPU, its weights exactly the file's
    tensors (plus the MODEL's UNet weights for a diff ControlNet)."""
    from diffusers import ControlNetModel, SD3ControlNetModel

    from .single_file import read_state_dict

    quiet_progress()
    state, _ = read_state_dict(path, (info.prefix,))
    state = {k[len(info.prefix):]: v for k, v in state.items() if k.startswith(info.prefix)}
    state.pop("difference", None)
    with torch.device("meta"):  # no random init: every weight comes from the file
        net = (SD3ControlNetModel if info.layout == "mmdit" else ControlNetModel).from_config(info.config)
    expected = list(net.state_dict())
    if info.layout == "ldm":
        if model is not None:
            state = _undiff(state, model)
        state, unused = controlnet_from_ldm(state, expected, info.config)
    else:
        unused = [k for k in state if k not in set(expected)]
    missing = sorted(set(expected) - set(state))
    if missing or unused:
        raise ModelError(f"ControlNet {name!r} does not match its config: {len(missing)} weights missing "
                         f"(e.g. {', '.join(missing[:2]) or '-'}), {len(unused)} unused (e.g. "
                         f"{', '.join(unused[:2]) or '-'})", hint="the file is incomplete or of another model family")
    try:
        net.load_state_dict({k: state[k] for k in expected}, strict=True, assign=True)
    except RuntimeError as exc:
        raise ModelError(f"ControlNet {name!r} does not fit its config: {str(exc).splitlines()[-1]}",
                         hint="the file is of another model family or size") from exc
    return net


def _undiff(state: dict[str, Any], model: ModelHandle) -> dict[str, Any]:
    """A diff ControlNet's weights plus the base UNet's of the same (ldm) name, as ComfyUI adds
    ``diffusion_model.<key>`` to ``control_model.<key>``."""
    from .ldm import unet_to_ldm

    with model.unet.use() as unet:
        base = {k.split("model.diffusion_model.", 1)[1]: v.detach().to("cpu")
                for k, v in unet_to_ldm(unet.state_dict(), dict(unet.config)).items()}
    return {k: v + base[k].to(v.dtype) if k in base and base[k].shape == v.shape else v for k, v in state.items()}


def set_union_type(control_net: Any, type_name: str) -> ControlNetHandle:
    """SetUnionControlNetType: a copy with ``control_type`` set ([] for "auto")."""
    net = _check_net(control_net, "control_net")
    number = UNION_TYPES.get(type_name, -1)
    return replace(net, extra={**net.extra, "control_type": [number] if number >= 0 else []})


# ----------------------------------------------------------------------------- the apply nodes


class AppliedControl:
    """A ControlNet applied to conditioning entries (ComfyUI's ``ControlNet.copy().set_cond_hint``).
    Compared by identity: entries holding the same object run in one batched call."""

    def __init__(self, net: ControlNetHandle, hint: torch.Tensor, strength: float, percent: tuple[float, float],
                 previous: AppliedControl | None, vae: Any = None, node: str | None = None) -> None:
        self.net, self.hint, self.strength, self.percent = net, hint, float(strength), percent
        self.previous, self.vae, self.node = previous, vae, node

    def chain(self) -> list[AppliedControl]:
        out: list[AppliedControl] = []
        c: AppliedControl | None = self
        while c is not None:
            out.append(c)
            c = c.previous
        return out

    def __repr__(self) -> str:
        return f"<control {self.net.name} x{self.strength:g} {self.percent}>"


def _check_net(control_net: Any, name: str) -> ControlNetHandle:
    if not isinstance(control_net, ControlNetHandle):
        raise ValueError(f"input {name!r} is a {type(control_net).__name__}, not a CONTROL_NET "
                         "(fix: connect a ControlNetLoader's output)")
    return control_net


def _check_vae(net: ControlNetHandle, vae: Any, node: str) -> Any:
    """SD3 ControlNets take the hint VAE-encoded: the apply node's ``vae`` must be connected."""
    from .components import VaeHandle

    if net.family != "sd3":
        return vae
    if vae is None:
        raise ValueError(f"{node}: input 'vae' is not connected, but the ControlNet {net.name!r} is an SD3 "
                         "ControlNet, which takes its hint image VAE-encoded (fix: connect the checkpoint's VAE "
                         "to the vae input of Apply ControlNet)")
    if not isinstance(vae, VaeHandle):
        raise ValueError(f"{node}: input 'vae' is a {type(vae).__name__}, not a VAE (fix: connect the VAE "
                         "output of the checkpoint loader or a VAELoader)")
    return vae


def _hint(image: Any) -> torch.Tensor:
    """IMAGE ``[B, H, W, C]`` -> the hint ``[B, C, H, W]`` float32 on the CPU."""
    from .latent_ops import as_image

    pixels = as_image(image)
    if pixels.ndim != 4 or pixels.shape[-1] not in (1, 3, 4):
        raise ValueError(f"input 'image' has shape {tuple(pixels.shape)}, not an IMAGE [batch, height, width, "
                         "channels] (fix: connect a LoadImage or another IMAGE output)")
    if pixels.shape[-1] != 3:  # ControlNets take RGB: grey is repeated, alpha dropped
        pixels = pixels[..., :3] if pixels.shape[-1] == 4 else pixels.repeat(1, 1, 1, 3)
    return pixels.movedim(-1, 1).contiguous()


def _previous(options: dict[str, Any]) -> AppliedControl | None:
    prev = options.get("control")
    return prev if isinstance(prev, AppliedControl) else None


def apply_controlnet(conditioning: Any, control_net: Any, image: Any, strength: float) -> list[list[Any]]:
    """ControlNetApply (ComfyUI's old node): each entry gets its own control over the whole run,
    also applied to the negative's entries that have none (``control_apply_to_uncond``)."""
    if strength == 0:
        return conditioning  # type: ignore[no-any-return]
    net, hint, node = _check_net(control_net, "control_net"), _hint(image), current().node_id
    if net.family == "sd3":  # ComfyUI fails at sampling ("This Controlnet needs a VAE"); we say it here
        raise ValueError(f"ControlNetApply: the ControlNet {net.name!r} is an SD3 ControlNet, which needs a VAE "
                         "(fix: use Apply ControlNet (ControlNetApplyAdvanced) and connect the checkpoint's VAE)")
    out = []
    for embedding, options in _pairs(conditioning, "conditioning"):
        control = AppliedControl(net, hint, strength, (0.0, 1.0), _previous(options), node=node)
        out.append([embedding, {**options, "control": control, "control_apply_to_uncond": True}])
    return out


def apply_controlnet_advanced(positive: Any, negative: Any, control_net: Any, image: Any, strength: float,
                              start_percent: float, end_percent: float, vae: Any = None
                              ) -> tuple[list[list[Any]], list[list[Any]]]:
    """ControlNetApplyAdvanced: one control per distinct previous control, shared by both sides."""
    if strength == 0:
        return positive, negative
    net, hint, node = _check_net(control_net, "control_net"), _hint(image), current().node_id
    vae = _check_vae(net, vae, "Apply ControlNet")
    made: dict[int, AppliedControl] = {}
    sides = []
    for name, conditioning in (("positive", positive), ("negative", negative)):
        side = []
        for embedding, options in _pairs(conditioning, name):
            prev = _previous(options)
            control = made.get(id(prev))
            if control is None:
                control = made[id(prev)] = AppliedControl(net, hint, strength, (start_percent, end_percent), prev,
                                                          vae, node)
            side.append([embedding, {**options, "control": control, "control_apply_to_uncond": False}])
        sides.append(side)
    return sides[0], sides[1]


# ----------------------------------------------------------------------------- sampling


def check_families(prepared: dict[str, list[dict[str, Any]]], family: str) -> None:
    """A clear error, before sampling, for a ControlNet of another family than the MODEL's."""
    for side, entries in prepared.items():
        for c in entries:
            control = c.get("control")
            for applied in control.chain() if isinstance(control, AppliedControl) else ():
                if applied.net.family != family:
                    raise ValueError(_family_error(side, applied, family))


def _family_error(side: str, applied: AppliedControl, family: str) -> str:
    from .tiny_controlnet import TINY_CONTROLNET_NAMES

    theirs, ours = FAMILY_NAMES.get(applied.net.family, applied.net.family), FAMILY_NAMES.get(family, family)
    by = f" (applied by node {applied.node})" if applied.node else ""
    example = f", e.g. {TINY_CONTROLNET_NAMES[family]!r}" if family in TINY_CONTROLNET_NAMES else ""
    return (f"input {side!r}: the ControlNet {applied.net.name!r}{by} is an {theirs} ControlNet but the MODEL is "
            f"{ours} (fix: in the ControlNetLoader's control_net_name pick a ControlNet made for {ours} "
            f"models{example}, or sample with an {theirs} checkpoint)")


def bind_controls(conds: dict[str, list[dict[str, Any]]], ms: Any, shape: tuple[int, ...]) -> None:
    """ComfyUI's ``apply_empty_x_to_equal_area`` and ``pre_run_control``, in place (module docstring)."""
    positive = conds.get("positive")
    if positive is not None:
        for name, side in conds.items():
            if name != "positive":
                _fill_uncond([c for c in positive if c.get("control_apply_to_uncond")], side)
    bound: dict[int, RunControl] = {}
    for side in conds.values():
        for c in side:
            if isinstance(c.get("control"), AppliedControl):
                c["control"] = _bind(c["control"], ms, int(shape[0]), bound)


def _fill_uncond(cond: list[dict[str, Any]], uncond: list[dict[str, Any]]) -> None:
    controls = [c["control"] for c in cond if "area" not in c and c.get("control") is not None]
    if any("area" not in u and u.get("control") is not None for u in uncond):
        return
    empty = [i for i, u in enumerate(uncond) if "area" not in u and u.get("control") is None]
    for k, control in enumerate(controls):
        if not empty:
            return
        i = empty[k % len(empty)]
        uncond[i] = {**uncond[i], "control": control}


def _bind(applied: AppliedControl, ms: Any, batch: int, bound: dict[int, RunControl]) -> RunControl:
    run = bound.get(id(applied))
    if run is None:
        prev = None if applied.previous is None else _bind(applied.previous, ms, batch, bound)
        run = bound[id(applied)] = RunControl(applied, ms, batch, prev)
    return run


class RunControl:
    """An applied control during one sampling run (ComfyUI's control object between ``pre_run``
    and ``cleanup``): its sigma window and the hint resized for this latent."""

    def __init__(self, applied: AppliedControl, ms: Any, batch: int, previous: RunControl | None) -> None:
        self.applied, self.ms, self.batch, self.previous = applied, ms, batch, previous
        self.sigma_start = ms.percent_to_sigma(applied.percent[0])
        self.sigma_end = ms.percent_to_sigma(applied.percent[1])
        self._hints: dict[tuple[Any, ...], torch.Tensor] = {}

    def residuals(self, x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor,
                  added: torch.Tensor | None = None) -> Residuals | None:
        """The summed residuals of this control's chain at ``x`` (raw latents) and ``sigma``."""
        prev = None if self.previous is None else self.previous.residuals(x, sigma, context, added)
        s = float(sigma[0])
        if s > self.sigma_start or s < self.sigma_end:
            return prev
        net = self.applied.net
        with net.module.use() as module:
            weight = next(module.parameters())  # diffusers' ``module.dtype`` walks every module: slow
            kwargs: dict[str, Any] = {}
            if added is not None:
                added = added.to(weight.dtype)
                kwargs["added_cond_kwargs"] = {"text_embeds": added[:, :-6], "time_ids": added[:, -6:]}
            down, mid = module(self.ms.calculate_input(sigma, x).to(weight.dtype), self.ms.timestep(sigma).float(),
                               encoder_hidden_states=context.to(weight.dtype),
                               controlnet_cond=self._hint_for(x, weight.device, weight.dtype),
                               conditioning_scale=self.applied.strength, return_dict=False, **kwargs)
        down = list(down)
        if net.global_pool:
            down = [d.mean(dim=(2, 3), keepdim=True).expand_as(d) for d in down]
            mid = mid.mean(dim=(2, 3), keepdim=True).expand_as(mid)
        if prev is not None:
            down, mid = [p + d for p, d in zip(prev[0], down, strict=True)], prev[1] + mid
        return down, mid

    def blocks(self, x: torch.Tensor, sigma: torch.Tensor, context: torch.Tensor, added: torch.Tensor | None,
               depth: int) -> list[torch.Tensor | None] | None:
        """An SD3 control chain's residuals for the ``depth`` joint blocks (``controlnet_sd3.py``)."""
        from .controlnet_sd3 import control_blocks

        return control_blocks(self, x, sigma, context, added, depth)

    def _hint_for(self, x: torch.Tensor, device: Any, dtype: Any) -> torch.Tensor:
        key = (x.shape[2], x.shape[3], device, dtype)
        hint = self._hints.get(key)
        if hint is None:
            from .latent import common_upscale

            hint = common_upscale(self.applied.hint, x.shape[3] * COMPRESSION, x.shape[2] * COMPRESSION,
                                  "nearest-exact", "center").to(device=device, dtype=dtype)
            self._hints = {key: hint}
        return broadcast_hint(hint, x.shape[0], max(1, x.shape[0] // self.batch))


def broadcast_hint(hint: torch.Tensor, total: int, batched: int) -> torch.Tensor:
    """ComfyUI's ``broadcast_image_to``: a one-image hint as is; else the first ``total //
    batched`` images (tiled when fewer), repeated for each of the ``batched`` entries."""
    if hint.shape[0] == 1 or hint.shape[0] == total:
        return hint
    per = total // batched
    hint = hint[:per]
    if per > hint.shape[0]:
        hint = torch.cat([hint] * (per // hint.shape[0]) + [hint[:per % hint.shape[0]]], dim=0)
    return hint if hint.shape[0] == total else torch.cat([hint] * batched, dim=0)

