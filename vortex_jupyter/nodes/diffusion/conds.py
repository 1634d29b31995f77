"""CONDITIONING at sampling time: areas, masks, strengths and timestep ranges, ComfyUI's way.

A CONDITIONING value is a list of ``[embedding, options]`` pairs (one per prompt or region).
Before a run each pair becomes a dict (``prepare``): the embedding under ``"cross_attn"`` and
the options as they are, then

- ``area`` (latent units ``(h, w, y, x)``, from ConditioningSetArea's pixels // 8) or
  ``("percentage", h, w, y, x)`` is resolved to latent units of this run; ``strength``
  scales the entry's weight;
- ``mask`` is resized (bilinear) to the latent; with ``set_area_to_bounds`` ("mask bounds")
  the area becomes the mask's bounding box (at least 8x8); ``mask_strength`` scales it;
- ``start_percent`` / ``end_percent`` become sigmas (``timestep_start`` / ``_end``): the entry
  takes part only while ``timestep_end <= sigma <= timestep_start``;
- every area entry of one side gets a twin on the other side (same area, the other side's
  smallest enclosing prompt), so CFG compares like with like.

At each model call (``calc_cond_batch``) each entry predicts on its area only; predictions
are summed with their weights (mask x strength, with an 8-pixel ramp at area borders inside
the latent) and divided by the summed weights, per pixel. Entries of equal shape share one
UNet call. With one plain prompt per side this is exactly ``uncond + cfg * (cond - uncond)``.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable
from typing import Any

import torch

from .model_sampling import ModelSampling

Cond = dict[str, Any]
#: ``apply(x, sigma, context, added)``: ``added`` is the model's extra vector per entry (SDXL's
#: pooled text embedding + size ids, see ``sdxl_added``) or None for models without one.
ApplyModel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]

#: SDXL's size conditioning when the prompt did not set it (ComfyUI's ``SDXL.encode_adm``).
SDXL_DEFAULT_SIZE = 768


def sdxl_added(c: Cond, side: str) -> torch.Tensor:
    """SDXL's extra input for one entry: its pooled text embedding followed by the six size ids
    ComfyUI's ``SDXL.encode_adm`` reads from the options, in its order: height, width, crop_h,
    crop_w, target_height, target_width (768, 768, 0, 0, then the height and width)."""
    pooled = c.get("pooled_output")
    if isinstance(pooled, torch.Tensor) and c.get("unclip_conditioning"):  # revision: the image embedding
        from .revision import revision_pooled

        seed = c.get("seed")
        pooled = revision_pooled(c["unclip_conditioning"], pooled.reshape(pooled.shape[0], -1).shape[1],
                                 None if seed is None else int(seed) - 10)
    if not isinstance(pooled, torch.Tensor):
        raise ValueError(f"input {side!r}: an SDXL model needs the pooled text embedding its CLIP gives "
                         "(fix: encode the prompt with the SDXL checkpoint's CLIP, e.g. CLIPTextEncode or "
                         "CLIPTextEncodeSDXL on it, not with another model's CLIP)")
    height = int(c.get("height", SDXL_DEFAULT_SIZE))
    width = int(c.get("width", SDXL_DEFAULT_SIZE))
    ids = [height, width, int(c.get("crop_h", 0)), int(c.get("crop_w", 0)),
           int(c.get("target_height", height)), int(c.get("target_width", width))]
    pooled = pooled.reshape(pooled.shape[0], -1).float()
    return torch.cat([pooled, torch.tensor([ids], dtype=torch.float32).repeat(pooled.shape[0], 1)], dim=1)


def refiner_added(c: Cond, side: str) -> torch.Tensor:
    """The SDXL refiner's extra input: G's pooled embedding, then ComfyUI's
    ``SDXLRefiner.encode_adm`` ids in its order: height, width, crop_h, crop_w, aesthetic score
    (768, 768, 0, 0; the score 6 for prompts, 2.5 on the negative side unless set)."""
    pooled = c.get("pooled_output")
    if not isinstance(pooled, torch.Tensor):
        raise ValueError(f"input {side!r}: an SDXL refiner needs the pooled text embedding of its CLIP (fix: "
                         "encode the prompt with the refiner checkpoint's CLIP, e.g. CLIPTextEncodeSDXLRefiner)")
    score = float(c.get("aesthetic_score", 2.5 if side == "negative" else 6.0))
    ids = [float(c.get("height", SDXL_DEFAULT_SIZE)), float(c.get("width", SDXL_DEFAULT_SIZE)),
           float(c.get("crop_h", 0)), float(c.get("crop_w", 0)), score]
    pooled = pooled.reshape(pooled.shape[0], -1).float()
    return torch.cat([pooled, torch.tensor([ids], dtype=torch.float32).repeat(pooled.shape[0], 1)], dim=1)


def add_model_inputs(prepared: dict[str, list[Cond]], family: str, seed: int | None = None) -> None:
    """Give every entry what the model's family needs besides the text embedding as ``added``
    (SDXL: pooled + size ids; SD3: pooled; Flux: pooled + guidance, ``transformer_apply``)."""
    if any("control" in c for entries in prepared.values() for c in entries):
        from .controlnet import check_families  # a ControlNet of another family: say so now

        check_families(prepared, family)
    if family == "sdxl_refiner":
        for side, entries in prepared.items():
            for c in entries:
                c["added"] = refiner_added(c, side)
        return
    if family not in ("sdxl", "sd3", "flux"):
        return
    if seed is not None and family == "sdxl":  # the sampler's seed (SDXL revision's augmentation noise)
        for entries in prepared.values():
            for c in entries:
                c.setdefault("seed", seed)
    if family != "sdxl":
        from .transformer_apply import model_inputs
    for side, entries in prepared.items():
        for c in entries:
            c["added"] = sdxl_added(c, side) if family == "sdxl" else model_inputs(c, family, side)


def prepare(conditioning: Any, name: str) -> list[Cond]:
    """CONDITIONING -> the list of dicts the sampler works on; a clear error if malformed."""
    if not isinstance(conditioning, (list, tuple)):
        raise ValueError(f"input {name!r} is a {type(conditioning).__name__}, not a CONDITIONING "
                         "(fix: connect the output of a CLIPTextEncode or another conditioning node)")
    out = []
    for i, pair in enumerate(conditioning):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and isinstance(pair[1], dict)
                and isinstance(pair[0], torch.Tensor)):
            raise ValueError(f"input {name!r}: entry {i} is not [embedding tensor, options dict] "
                             "(fix: connect a CONDITIONING output)")
        out.append({**pair[1], "cross_attn": pair[0], "uuid": uuid.uuid4()})
    return out


def _mask_box(mask: torch.Tensor) -> tuple[int, int, int, int] | None:
    """(h, w, y, x) of the non-zero part of a [H, W] mask, or None when it is all zero."""
    ys, xs = torch.where(mask != 0)
    if ys.numel() == 0:
        return None
    return (int(ys.max() - ys.min() + 1), int(xs.max() - xs.min() + 1), int(ys.min()), int(xs.min()))


def _resolve(c: Cond, h: int, w: int, device: Any) -> Cond:
    out = dict(c)
    out["cross_attn"] = out["cross_attn"].to(device=device, dtype=torch.float32)
    if "added" in out:
        out["added"] = out["added"].to(device=device)
    area = out.get("area")
    if area is not None and area[0] == "percentage":
        _, ah, aw, ay, ax = area
        out["area"] = (max(1, round(ah * h)), max(1, round(aw * w)), round(ay * h), round(ax * w))
    if "mask" in out:
        mask = torch.as_tensor(out["mask"]).to(device=device, dtype=torch.float32)
        if mask.ndim == 2:
            mask = mask.unsqueeze(0)
        if tuple(mask.shape[1:]) != (h, w):
            mask = torch.nn.functional.interpolate(mask.unsqueeze(1), size=(h, w), mode="bilinear",
                                                   align_corners=False).squeeze(1)
        if out.get("set_area_to_bounds", False):
            box = _mask_box(torch.max(torch.abs(mask), dim=0).values)
            out["area"] = (8, 8, 0, 0) if box is None else (max(8, box[0]), max(8, box[1]), box[2], box[3])
        out["mask"] = mask
    return out


def _inside(a: tuple[int, ...], b: tuple[int, ...]) -> bool:
    """Whether area ``a`` lies within area ``b`` (both (h, w, y, x))."""
    return a[2] >= b[2] and a[3] >= b[3] and a[0] + a[2] <= b[0] + b[2] and a[1] + a[3] <= b[1] + b[3]


def _twin_area(side: list[Cond], c: Cond) -> None:
    """Give ``side`` an entry with ``c``'s area, using its smallest prompt that encloses it."""
    if "area" not in c:
        return
    smallest: Cond | None = None
    for x in side:
        if "area" in x:
            if _inside(c["area"], x["area"]) and (
                    smallest is None or "area" not in smallest
                    or math.prod(smallest["area"][:2]) > math.prod(x["area"][:2])):
                smallest = x
        elif smallest is None:
            smallest = x
    if smallest is None or smallest.get("area") == c["area"]:
        return
    twin = {**c, "cross_attn": smallest["cross_attn"]}
    if "added" in smallest:  # the model's other inputs come from that prompt too (ComfyUI's model_conds)
        twin["added"] = smallest["added"]
    if "concat" in smallest:
        twin["concat"] = smallest["concat"]
    side.append(twin)


def process(ms: ModelSampling, conds: dict[str, list[Cond]], shape: tuple[int, ...], device: Any
            ) -> dict[str, list[Cond]]:
    """Resolve areas, masks and timestep ranges for a run on latents of ``shape``."""
    h, w = shape[2], shape[3]
    out = {k: [_resolve(c, h, w, device) for c in v] for k, v in conds.items()}
    for side in out.values():
        for i, c in enumerate(side):
            if "start_percent" in c or "end_percent" in c:
                c = dict(c)
                if "start_percent" in c:
                    c["timestep_start"] = ms.percent_to_sigma(c["start_percent"])
                if "end_percent" in c:
                    c["timestep_end"] = ms.percent_to_sigma(c["end_percent"])
                side[i] = c
    for k, side in out.items():
        for c in list(side) if len(out) > 1 else ():
            for other_key, other in out.items():
                if other_key != k:
                    _twin_area(other, c)
    if any("control" in c for side in out.values() for c in side):
        from .controlnet import bind_controls  # ControlNets: uncond fill and this run's sigma windows

        bind_controls(out, ms, shape)
    return out


def _area_and_mult(c: Cond, x: torch.Tensor, sigma: torch.Tensor) -> tuple[Any, ...] | None:
    """(input slice, weight, area) of one entry at this sigma, or None when it is inactive."""
    s = float(sigma[0])
    if "timestep_start" in c and s > c["timestep_start"]:
        return None
    if "timestep_end" in c and s < c["timestep_end"]:
        return None
    area = list(c["area"]) if "area" in c else None
    part = x
    if area is not None:
        for d in range(2):
            area[d] = min(x.shape[d + 2] - area[2 + d], area[d])
            part = part.narrow(d + 2, area[2 + d], area[d])
    if "mask" in c:
        mask = c["mask"][:part.shape[0]]
        if area is not None:
            mask = mask.narrow(1, area[2], area[0]).narrow(2, area[3], area[1])
        mask = mask * c.get("mask_strength", 1.0)
        mult = mask.unsqueeze(1).repeat(part.shape[0] // mask.shape[0], part.shape[1], 1, 1)
    else:
        mult = torch.ones_like(part)
    mult = mult * c.get("strength", 1.0)
    if "mask" not in c and area is not None:
        _ramp_borders(mult, area, x.shape)
    return part, mult, area


def _ramp_borders(mult: torch.Tensor, area: list[int], full: Any) -> None:
    """Fade an area's weight over up to 8 latent pixels at borders inside the latent."""
    for d in range(2):
        rr = min(8, mult.shape[2 + d] // 4)
        if area[2 + d] != 0:
            for t in range(rr):
                mult.narrow(d + 2, t, 1).mul_((1.0 / rr) * (t + 1))
        if area[d] + area[2 + d] < full[d + 2]:
            for t in range(rr):
                mult.narrow(d + 2, area[d] - 1 - t, 1).mul_((1.0 / rr) * (t + 1))


def _context(cs: list[torch.Tensor], batch: int) -> torch.Tensor:
    """Embeddings of entries run together: repeated to the batch, lengths to a common multiple."""
    length = 1
    for c in cs:
        length = math.lcm(length, c.shape[1])
    parts = []
    for c in cs:
        c = c if c.shape[0] == batch else c.repeat(math.ceil(batch / c.shape[0]), 1, 1)[:batch]
        parts.append(c.repeat(1, length // c.shape[1], 1) if c.shape[1] < length else c)
    return torch.cat(parts)


def _rows(vs: list[torch.Tensor], batch: int) -> torch.Tensor:
    """Per-entry vectors ([n, D]) of entries run together, each repeated to the batch."""
    return torch.cat([v if v.shape[0] == batch else v.repeat(math.ceil(batch / v.shape[0]), 1)[:batch] for v in vs])


def _concat_part(concat: torch.Tensor | None, area: list[int] | None) -> torch.Tensor | None:
    """An entry's concat channels cut to its area (ComfyUI's ``CONDNoiseShape``)."""
    if concat is None or area is None:
        return concat
    return concat.narrow(2, area[2], area[0]).narrow(3, area[3], area[1])


def _can_share(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    if a[0].shape != b[0].shape or a[6] is not b[6]:  # entries with different controls never share a call
        return False
    if (a[5] is None) != (b[5] is None) or (a[5] is not None and a[5].shape[1] != b[5].shape[1]):
        return False
    if (a[7] is None) != (b[7] is None):  # an inpainting UNet's concat (``inpaint.py``)
        return False
    s1, s2 = a[3].shape, b[3].shape
    if s1 == s2:
        return True
    if s1[0] != s2[0] or s1[2] != s2[2]:
        return False
    return math.lcm(s1[1], s2[1]) // min(s1[1], s2[1]) <= 4


def calc_cond_batch(apply: ApplyModel, sides: list[list[Cond] | None], x: torch.Tensor, sigma: torch.Tensor
                    ) -> list[torch.Tensor]:
    """Each side's prediction (weighted over its entries) at ``x`` and ``sigma`` ([B])."""
    outs = [torch.zeros_like(x) for _ in sides]
    counts = [torch.ones_like(x) * 1e-37 for _ in sides]
    pending = []
    for i, side in enumerate(sides):
        for c in side or ():
            found = _area_and_mult(c, x, sigma)
            if found is not None:
                pending.append((*found, c["cross_attn"], i, c.get("added"), c.get("control"),
                                _concat_part(c.get("concat"), found[2])))
    while pending:
        group = [j for j in range(len(pending)) if _can_share(pending[j], pending[0])][::-1]
        items = [pending.pop(j) for j in group]
        batch = items[0][0].shape[0]
        inputs = torch.cat([it[0] for it in items])
        context = _context([it[3] for it in items], batch)
        added = None if items[0][5] is None else _rows([it[5] for it in items], batch)
        control = {} if items[0][6] is None else {"control": items[0][6]}  # a ControlNet (``controlnet.py``)
        if items[0][7] is not None:
            control["concat"] = torch.cat([it[7] for it in items])
        predicted = apply(inputs, sigma.repeat(len(items)), context, added, **control).chunk(len(items))
        for (_, mult, area, _, side, *_), pred in zip(items, predicted):
            out, count = outs[side], counts[side]
            if area is not None:
                out = out.narrow(2, area[2], area[0]).narrow(3, area[3], area[1])
                count = count.narrow(2, area[2], area[0]).narrow(3, area[3], area[1])
            out += pred * mult
            count += mult
    return [o / c for o, c in zip(outs, counts)]


def cfg(cond: torch.Tensor, uncond: torch.Tensor, scale: float) -> torch.Tensor:
    return uncond + (cond - uncond) * scale
