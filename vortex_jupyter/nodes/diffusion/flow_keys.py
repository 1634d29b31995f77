"""SD3/SD3.5 MMDiT and Flux transformers: diffusers names <-> the original single-file layouts.

ComfyUI loads these transformers in the layouts their authors published (Stability's ``sd3*``
files, Black Forest Labs' ``flux1-*`` files); diffusers names the same tensors differently and
splits every fused projection. Both directions are pure renames plus two tensor operations:

- **fused along dim 0**: an original ``qkv`` is diffusers' q, k, v stacked (``attn.qkv`` <->
  ``attn.to_q/to_k/to_v``, ``context_block.attn.qkv`` <-> ``attn.add_q_proj/...``); Flux's
  single-block ``linear1`` is q, k, v and ``proj_mlp`` stacked (``hidden`` rows each for q, k, v,
  the rest for the MLP);
- **halves swapped**: the original final ``adaLN_modulation.1`` produces (shift, scale), diffusers'
  ``AdaLayerNormContinuous`` (scale, shift). So does SD3's last joint block, whose context half is
  "pre-only" (no attention output, no MLP; just a 2-way modulation).

Optional parts follow the keys present: SD3.5's ``ln_q/ln_k`` (qk norm) and ``x_block.attn2.*``
(dual attention, SD3.5 medium), Flux's ``guidance_in.*`` (dev, not schnell).

Results share storage with the input: renamed tensors are the same objects and split parts are
views of the fused tensor, so nothing is copied (``load_state_dict`` copies anyway; clone before
``safetensors.save_file``, which refuses tensors that share memory).

Configs from shapes (``*_config_from_original``, a header is enough) infer every diffusers
argument the weights determine. What no shape holds, and the default taken:

- SD3 ``attention_head_dim``: the ``ln_q`` width when the file has qk norm; otherwise 64, the head
  width of every Stability MMDiT (ComfyUI assumes the same: heads = width // 64);
- SD3 ``sample_size``: 128 (every release); it sizes nothing once ``pos_embed_max_size`` is set;
- Flux ``axes_dims_rope``: (16, 56, 56), FLUX.1's, when the head width is 128; for other widths it
  has to be passed. Flux ``patch_size`` is 1: diffusers packs 2x2 latent patches outside the model.

>>> original = flux_to_original(model.state_dict())  # doctest: +SKIP
>>> original["double_blocks.0.img_attn.qkv.weight"].shape  # q, k, v stacked  # doctest: +SKIP
torch.Size([9216, 3072])
>>> FluxTransformer2DModel(**flux_config_from_original(shapes))  # doctest: +SKIP
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ...errors import ModelError

Shapes = dict[str, tuple[int, ...]]
Table = dict[str, tuple[str, ...]]  # original name -> the diffusers names it holds, in stacking order

FULL_CHECKPOINT_PREFIX = "model.diffusion_model."


def _linear(original: str, *diffusers: str) -> Table:
    return {f"{original}.{p}": tuple(f"{d}.{p}" for d in diffusers) for p in ("weight", "bias")}


def _norm(original: str, diffusers: str) -> Table:
    return {original: (diffusers,)}


def _params(module: str) -> frozenset[str]:
    return frozenset({f"{module}.weight", f"{module}.bias"})


@dataclass(frozen=True)
class _Layout:
    """One family's mapping: ``top``-level names, then per original block list (``joint_blocks``)
    its diffusers list (``transformer_blocks``) and the per-block table."""

    family: str
    top: Table
    blocks: dict[str, tuple[str, Table]]
    swapped: frozenset[str]  # top-level originals stored (shift, scale)
    swapped_last: dict[str, frozenset[str]]  # per block list: names swapped in its last block
    width_key: str  # original key whose dim 0 is the model width


# ----------------------------------------------------------------------------- SD3 / SD3.5


def _sd3_block() -> Table:
    table: Table = {}
    for side, q, k, v, out, norm, ff, ln_q, ln_k in (
            ("x_block", "attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0", "norm1", "ff",
             "attn.norm_q", "attn.norm_k"),
            ("context_block", "attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj", "attn.to_add_out",
             "norm1_context", "ff_context", "attn.norm_added_q", "attn.norm_added_k")):
        table |= _linear(f"{side}.attn.qkv", q, k, v) | _linear(f"{side}.attn.proj", out)
        table |= _linear(f"{side}.adaLN_modulation.1", f"{norm}.linear")
        table |= _linear(f"{side}.mlp.fc1", f"{ff}.net.0.proj") | _linear(f"{side}.mlp.fc2", f"{ff}.net.2")
        # qk norm: RMSNorm (weight only, SD3.5) or LayerNorm (weight and bias)
        table |= _linear(f"{side}.attn.ln_q", ln_q) | _linear(f"{side}.attn.ln_k", ln_k)
    table |= _linear("x_block.attn2.qkv", "attn2.to_q", "attn2.to_k", "attn2.to_v")
    table |= _linear("x_block.attn2.proj", "attn2.to_out.0")
    table |= _linear("x_block.attn2.ln_q", "attn2.norm_q") | _linear("x_block.attn2.ln_k", "attn2.norm_k")
    return table


_SD3 = _Layout(
    family="SD3 MMDiT",
    top={**_norm("pos_embed", "pos_embed.pos_embed"),
         **_linear("x_embedder.proj", "pos_embed.proj"),
         **_linear("t_embedder.mlp.0", "time_text_embed.timestep_embedder.linear_1"),
         **_linear("t_embedder.mlp.2", "time_text_embed.timestep_embedder.linear_2"),
         **_linear("y_embedder.mlp.0", "time_text_embed.text_embedder.linear_1"),
         **_linear("y_embedder.mlp.2", "time_text_embed.text_embedder.linear_2"),
         **_linear("context_embedder", "context_embedder"),
         **_linear("final_layer.linear", "proj_out"),
         **_linear("final_layer.adaLN_modulation.1", "norm_out.linear")},
    blocks={"joint_blocks": ("transformer_blocks", _sd3_block())},
    swapped=_params("final_layer.adaLN_modulation.1"),
    swapped_last={"joint_blocks": _params("context_block.adaLN_modulation.1")},
    width_key="x_embedder.proj.weight",
)

# ----------------------------------------------------------------------------- Flux


def _flux_double() -> Table:
    table: Table = {}
    for side, q, k, v, out, norm, ff, nq, nk in (
            ("img", "attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0", "norm1", "ff",
             "attn.norm_q", "attn.norm_k"),
            ("txt", "attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj", "attn.to_add_out",
             "norm1_context", "ff_context", "attn.norm_added_q", "attn.norm_added_k")):
        table |= _linear(f"{side}_mod.lin", f"{norm}.linear")
        table |= _linear(f"{side}_attn.qkv", q, k, v) | _linear(f"{side}_attn.proj", out)
        table |= _norm(f"{side}_attn.norm.query_norm.scale", f"{nq}.weight")
        table |= _norm(f"{side}_attn.norm.key_norm.scale", f"{nk}.weight")
        table |= _linear(f"{side}_mlp.0", f"{ff}.net.0.proj") | _linear(f"{side}_mlp.2", f"{ff}.net.2")
    return table


_FLUX_SINGLE: Table = {
    **_linear("linear1", "attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp"),
    **_linear("linear2", "proj_out"),
    **_linear("modulation.lin", "norm.linear"),
    **_norm("norm.query_norm.scale", "attn.norm_q.weight"),
    **_norm("norm.key_norm.scale", "attn.norm_k.weight"),
}

_FLUX = _Layout(
    family="Flux transformer",
    top={**_linear("img_in", "x_embedder"),
         **_linear("txt_in", "context_embedder"),
         **_linear("time_in.in_layer", "time_text_embed.timestep_embedder.linear_1"),
         **_linear("time_in.out_layer", "time_text_embed.timestep_embedder.linear_2"),
         **_linear("vector_in.in_layer", "time_text_embed.text_embedder.linear_1"),
         **_linear("vector_in.out_layer", "time_text_embed.text_embedder.linear_2"),
         **_linear("guidance_in.in_layer", "time_text_embed.guidance_embedder.linear_1"),
         **_linear("guidance_in.out_layer", "time_text_embed.guidance_embedder.linear_2"),
         **_linear("final_layer.linear", "proj_out"),
         **_linear("final_layer.adaLN_modulation.1", "norm_out.linear")},
    blocks={"double_blocks": ("transformer_blocks", _flux_double()),
            "single_blocks": ("single_transformer_blocks", _FLUX_SINGLE)},
    swapped=_params("final_layer.adaLN_modulation.1"),
    swapped_last={},
    width_key="img_in.weight",
)

# ----------------------------------------------------------------------------- conversion


def _block_counts(keys: Any, lists: dict[str, str]) -> dict[str, int]:
    """Blocks per list (``lists``: name in ``keys`` -> original list name): highest index + 1."""
    counts = dict.fromkeys(lists.values(), 0)
    for key in keys:
        head, _, rest = key.partition(".")
        index = rest.partition(".")[0]
        if head in lists and index.isdigit():
            counts[lists[head]] = max(counts[lists[head]], int(index) + 1)
    return counts


def _names(layout: _Layout, counts: dict[str, int]) -> tuple[Table, set[str]]:
    """Every original name -> its diffusers names for these block counts, and the swapped names."""
    names, swapped = dict(layout.top), set(layout.swapped)
    for original, (diffusers, table) in layout.blocks.items():
        n = counts[original]
        for i in range(n):
            names.update({f"{original}.{i}.{o}": tuple(f"{diffusers}.{i}.{d}" for d in ds)
                          for o, ds in table.items()})
        if n:
            swapped.update(f"{original}.{n - 1}.{o}" for o in layout.swapped_last.get(original, ()))
    return names, swapped


def _swap_halves(value: Any) -> Any:
    import torch

    first, second = value.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def _unknown(layout: _Layout, keys: list[str], side: str) -> ModelError:
    shown = ", ".join(repr(k) for k in keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
    return ModelError(f"{len(keys)} key(s) are not part of a {layout.family} in the {side} layout: {shown}",
                      hint=f"pass only the {layout.family}'s own tensors (strip other components first; "
                           f"a full checkpoint needs prefix={FULL_CHECKPOINT_PREFIX!r})")


def _to_original(layout: _Layout, state: dict[str, Any]) -> dict[str, Any]:
    import torch

    lists = {d: o for o, (d, _) in layout.blocks.items()}
    names, swapped = _names(layout, _block_counts(state, lists))
    known = {d for ds in names.values() for d in ds}
    unknown = sorted(k for k in state if k not in known)
    if unknown:
        raise _unknown(layout, unknown, "diffusers")
    out: dict[str, Any] = {}
    for original, parts in names.items():
        present = [d for d in parts if d in state]
        if not present:
            continue  # an optional part (qk norm, attn2, guidance, a pre-only block's outputs)
        if len(present) != len(parts):
            missing = sorted(set(parts) - set(present))
            raise ModelError(f"{layout.family}: {original!r} stacks {parts}, but {missing} are missing",
                             hint="pass the complete state dict of the diffusers model")
        value = state[parts[0]] if len(parts) == 1 else torch.cat([state[d] for d in parts], dim=0)
        out[original] = _swap_halves(value) if original in swapped else value
    return out


def _strip(state: dict[str, Any], prefix: str, layout: _Layout) -> dict[str, Any]:
    own = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not own:
        raise ModelError(f"no key starts with prefix {prefix!r}, so there is no {layout.family} to read",
                         hint="pass the prefix the file uses ('' for a bare transformer file, "
                              f"{FULL_CHECKPOINT_PREFIX!r} for a full checkpoint)")
    return own


def _split(value: Any, count: int, width: int, name: str) -> tuple[Any, ...]:
    """q, k, v (and the MLP rest for Flux's ``linear1``) out of one fused tensor."""
    sizes = [width] * 3 + ([value.shape[0] - 3 * width] if count == 4 else [])
    if len(sizes) != count or sum(sizes) != value.shape[0] or min(sizes) <= 0:
        raise ModelError(f"{name!r} has {value.shape[0]} rows, which do not split into {count} parts "
                         f"of a {width}-wide model", hint="the file is not a complete model of this family")
    return tuple(value.split(sizes, dim=0))


def _from_original(layout: _Layout, state: dict[str, Any], prefix: str) -> dict[str, Any]:
    own = _strip(state, prefix, layout)
    names, swapped = _names(layout, _block_counts(own, {o: o for o in layout.blocks}))
    unknown = sorted(k for k in own if k not in names)
    if unknown:
        raise _unknown(layout, unknown, "original")
    if layout.width_key not in own:
        raise ModelError(f"{layout.family}: {layout.width_key!r} is missing, so the model width is unknown",
                         hint="the file is truncated or not a complete model of this family")
    width = int(own[layout.width_key].shape[0])
    out: dict[str, Any] = {}
    for original, value in own.items():
        parts = names[original]
        if original in swapped:
            value = _swap_halves(value)
        out.update(zip(parts, (value,) if len(parts) == 1 else _split(value, len(parts), width, original)))
    return out


def sd3_to_original(state: dict[str, Any]) -> dict[str, Any]:
    """An ``SD3Transformer2DModel`` state dict -> the original MMDiT names (no prefix)."""
    return _to_original(_SD3, state)


def sd3_from_original(state: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Original MMDiT names (under ``prefix``, stripped; other keys ignored) -> an
    ``SD3Transformer2DModel`` state dict."""
    return _from_original(_SD3, state, prefix)


def flux_to_original(state: dict[str, Any]) -> dict[str, Any]:
    """A ``FluxTransformer2DModel`` state dict -> Black Forest Labs' names (no prefix)."""
    return _to_original(_FLUX, state)


def flux_from_original(state: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Black Forest Labs' names (under ``prefix``, stripped; other keys ignored) -> a
    ``FluxTransformer2DModel`` state dict."""
    return _from_original(_FLUX, state, prefix)


def _shapes_from_diffusers(layout: _Layout, shapes: Shapes) -> Shapes:
    """The original names and shapes of diffusers-named tensors, from shapes alone (torch-free):
    a fused tensor stacks its parts along dim 0, and swapping halves keeps a shape."""
    lists = {d: o for o, (d, _) in layout.blocks.items()}
    names, _ = _names(layout, _block_counts(shapes, lists))
    out: Shapes = {}
    for original, parts in names.items():
        present = [tuple(shapes[d]) for d in parts if d in shapes]
        if present:
            out[original] = (sum(s[0] for s in present), *present[0][1:])
    return out


def sd3_shapes_from_diffusers(shapes: Shapes) -> Shapes:
    """``SD3Transformer2DModel`` names and shapes -> the original MMDiT's (for ``*_config_from_original``)."""
    return _shapes_from_diffusers(_SD3, shapes)


def flux_shapes_from_diffusers(shapes: Shapes) -> Shapes:
    """``FluxTransformer2DModel`` names and shapes -> Black Forest Labs' (for ``*_config_from_original``)."""
    return _shapes_from_diffusers(_FLUX, shapes)


# ----------------------------------------------------------------------------- configs from shapes

SD3_HEAD_DIM = 64  # every Stability MMDiT: heads = width // 64
FLUX_HEAD_DIM = 128
FLUX_AXES_DIMS_ROPE = (16, 56, 56)  # FLUX.1's rotary split of a 128-wide head
MLP_RATIO = 4  # diffusers' JointTransformerBlock and Flux blocks have no other


def _shapes(shapes: Shapes, prefix: str, layout: _Layout) -> Shapes:
    return {k: tuple(int(d) for d in v) for k, v in _strip(dict(shapes), prefix, layout).items()}


def _need(shapes: Shapes, key: str, layout: _Layout) -> tuple[int, ...]:
    if key not in shapes:
        raise ModelError(f"{key!r} is missing: this is not a {layout.family} in the original layout",
                         hint="check the file (and the prefix: a full checkpoint needs "
                              f"{FULL_CHECKPOINT_PREFIX!r})")
    return shapes[key]


def _check_mlp(shapes: Shapes, key: str, rows: int, layout: _Layout) -> None:
    if key in shapes and shapes[key][0] != rows:
        raise ModelError(f"{key!r} has {shapes[key][0]} rows where a {layout.family} with an MLP ratio of "
                         f"{MLP_RATIO} has {rows}", hint="diffusers builds only that ratio; this file is "
                                                        "another architecture")


def _heads(width: int, head_dim: int, layout: _Layout) -> int:
    if head_dim <= 0 or width % head_dim:
        raise ModelError(f"a {width}-wide {layout.family} cannot have {head_dim}-wide attention heads",
                         hint="pass the head width the model was trained with")
    return width // head_dim


def sd3_config_from_original(shapes: Shapes, *, prefix: str = "",
                             attention_head_dim: int | None = None) -> dict[str, Any]:
    """The ``SD3Transformer2DModel`` config of an original MMDiT, from tensor shapes only.

    ``attention_head_dim`` is read from the qk norm when the file has one (a different value
    passed is an error), else taken from the argument, else 64 (see the module docstring)."""
    s = _shapes(shapes, prefix, _SD3)
    width, in_channels, patch = _need(s, "x_embedder.proj.weight", _SD3)[:3]
    layers = _block_counts(s, {"joint_blocks": "joint_blocks"})["joint_blocks"]
    ln_q = s.get("joint_blocks.0.x_block.attn.ln_q.weight")
    if ln_q is not None and attention_head_dim not in (None, ln_q[0]):
        raise ModelError(f"attention_head_dim={attention_head_dim} was passed, but the qk norm says "
                         f"{ln_q[0]}", hint="leave attention_head_dim out for files with qk norm")
    head_dim = ln_q[0] if ln_q is not None else attention_head_dim or SD3_HEAD_DIM
    patches = _need(s, "pos_embed", _SD3)[1]
    if math.isqrt(patches) ** 2 != patches:
        raise ModelError(f"'pos_embed' holds {patches} positions, not a square grid",
                         hint="the file is not an SD3 MMDiT")
    context = _need(s, "context_embedder.weight", _SD3)
    _check_mlp(s, "joint_blocks.0.x_block.mlp.fc1.weight", MLP_RATIO * width, _SD3)
    return {
        "sample_size": 128, "patch_size": patch, "in_channels": in_channels, "num_layers": layers,
        "attention_head_dim": head_dim, "num_attention_heads": _heads(width, head_dim, _SD3),
        "joint_attention_dim": context[1], "caption_projection_dim": context[0],
        "pooled_projection_dim": _need(s, "y_embedder.mlp.0.weight", _SD3)[1],
        "out_channels": _need(s, "final_layer.linear.weight", _SD3)[0] // (patch * patch),
        "pos_embed_max_size": math.isqrt(patches),
        "dual_attention_layers": tuple(i for i in range(layers)
                                       if f"joint_blocks.{i}.x_block.attn2.qkv.weight" in s),
        "qk_norm": None if ln_q is None else
        "layer_norm" if "joint_blocks.0.x_block.attn.ln_q.bias" in s else "rms_norm",
    }


def flux_config_from_original(shapes: Shapes, *, prefix: str = "",
                              axes_dims_rope: tuple[int, ...] | None = None) -> dict[str, Any]:
    """The ``FluxTransformer2DModel`` config of a Black Forest Labs Flux file, from shapes only.

    The head width is the qk norm's (``query_norm.scale``); ``axes_dims_rope`` (which must sum to
    it) defaults to FLUX.1's (16, 56, 56) for 128-wide heads and has to be passed otherwise."""
    s = _shapes(shapes, prefix, _FLUX)
    width, in_channels = _need(s, "img_in.weight", _FLUX)
    counts = _block_counts(s, {"double_blocks": "double_blocks", "single_blocks": "single_blocks"})
    norm = "double_blocks.0.img_attn.norm.query_norm.scale" if counts["double_blocks"] else \
        "single_blocks.0.norm.query_norm.scale"
    head_dim = _need(s, norm, _FLUX)[0]
    if axes_dims_rope is None and head_dim != FLUX_HEAD_DIM:
        raise ModelError(f"the heads are {head_dim} wide, so FLUX.1's rotary axes {FLUX_AXES_DIMS_ROPE} "
                         "do not fit and the file does not say which do",
                         hint=f"pass axes_dims_rope (summing to {head_dim})")
    axes = tuple(axes_dims_rope) if axes_dims_rope is not None else FLUX_AXES_DIMS_ROPE
    if sum(axes) != head_dim:
        raise ModelError(f"axes_dims_rope={axes} sums to {sum(axes)}, but the heads are {head_dim} wide",
                         hint=f"pass rotary axes that sum to {head_dim}")
    _check_mlp(s, "double_blocks.0.img_mlp.0.weight", MLP_RATIO * width, _FLUX)
    _check_mlp(s, "single_blocks.0.linear1.weight", (3 + MLP_RATIO) * width, _FLUX)
    return {
        "patch_size": 1, "in_channels": in_channels,
        "out_channels": _need(s, "final_layer.linear.weight", _FLUX)[0],
        "num_layers": counts["double_blocks"], "num_single_layers": counts["single_blocks"],
        "attention_head_dim": head_dim, "num_attention_heads": _heads(width, head_dim, _FLUX),
        "joint_attention_dim": _need(s, "txt_in.weight", _FLUX)[1],
        "pooled_projection_dim": _need(s, "vector_in.in_layer.weight", _FLUX)[1],
        "guidance_embeds": "guidance_in.in_layer.weight" in s, "axes_dims_rope": axes,
    }
