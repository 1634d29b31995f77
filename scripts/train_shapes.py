"""Train ``vortex-shapes``: a tiny SD1-shaped model that draws coloured shapes, on the CPU.

What it trains (issue 13, item 5): the three parts of a Stable Diffusion 1 checkpoint, with
SD1's shapes scaled down so the file ships inside the wheel, on scenes this script draws itself
(``shapes/scenes.py``: a circle / square / triangle / star in one of 8 colours, on a background of
another, at the centre, left, right, top or bottom, with prompts such as "a red circle on a blue
background" or "... at the left"):

1. the VAE (``AutoencoderKL``, 8x downscale: 64x64 images <-> 8x8x4 latents) learns to
   reconstruct the scenes (mean squared error through the posterior's mean); its latents are
   then re-centred and scaled per channel, folded into ``quant_conv`` / ``post_quant_conv``, so
   that in the sampler's space (SD1's fixed factor 0.18215, which every SD1 sampler uses) they
   have mean 0 and std 1, and its posterior gets a small fixed std;
2. the UNet (``UNet2DConditionModel``) and the text encoder (``CLIPTextModel``, from scratch,
   reading the package's offline CLIP tokenizer exactly as CLIPTextEncode does) learn together
   on the cached latents: epsilon prediction under SD1's noise schedule (1000 steps,
   scaled_linear betas 0.00085..0.012), min-SNR-5 loss weights, 10% empty prompts for
   classifier-free guidance, a small auxiliary loss that makes the text encoder tell every
   colour, shape and position apart (``Probe``), and an EMA of both, which is what ships.

The result is one single-file checkpoint in the original SD key layout (``models.write_single_file``,
as ``vortex-tiny.safetensors``; weights in fp16) at
``vortex_jupyter/nodes/diffusion/shapes/vortex-shapes.safetensors``, and ``vortex-shapes.json``
next to it with its sha256 (checked on every load) and the training settings. The script
prints the sha256.

Deterministic: seeded numpy/torch, ``torch.use_deterministic_algorithms``, a fixed thread count
(``--threads``); the same command on the same torch build writes the same bytes.

How long it takes here (2 shared CPU cores; see the log of the committed run in
``vortex-shapes.json``): about an hour with the defaults (VAE ~15 min, UNet + CLIP ~45 min).

Usage::

    python scripts/train_shapes.py                 # the full run (writes the package's file)
    python scripts/train_shapes.py --quick --out /tmp/shapes   # a few minutes: do shapes appear?
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vortex_jupyter.nodes.diffusion.shapes.scenes import COLORS, POSITIONS, Scene, all_scenes, prompt  # noqa: E402

PACKAGE_DIR = ROOT / "vortex_jupyter" / "nodes" / "diffusion" / "shapes"
NAME = "vortex-shapes"
SIZE = 64          # image side in pixels (latent side: SIZE // 8)
SUPER = 4          # scenes are drawn at SUPER x the size, then box-filtered down (anti-aliasing)
SD1_SCALE = 0.18215  # the sampler's latent factor for every SD1 model (latent_format.FAMILIES)
PROBE_WEIGHT = 0.1  # the text encoder's auxiliary loss (``Probe``) next to the diffusion loss
POSTERIOR_STD = 0.01  # the VAE posterior's std in the sampler's space (latents there have std 1)


# ----------------------------------------------------------------------------- scenes


def _star(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    points = []
    for i in range(10):
        radius = r if i % 2 == 0 else r * 0.42
        angle = -math.pi / 2 + i * math.pi / 5
        points.append((cx + radius * math.cos(angle), cy + radius * math.sin(angle)))
    return points


def _triangle(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """Pointing up, centred on its bounding box (not its centroid), so it sits where asked."""
    half_w, half_h = r * 0.95, r * 0.85
    return [(cx, cy - half_h), (cx + half_w, cy + half_h), (cx - half_w, cy + half_h)]


def draw(scene: Scene, rng: np.random.Generator | None = None) -> np.ndarray:
    """The scene as ``[SIZE, SIZE, 3]`` uint8; ``rng`` jitters its size and place a little."""
    jx, jy, jr = (rng.uniform(-2.0, 2.0, 3) if rng is not None else (0.0, 0.0, 0.0))
    s = SIZE * SUPER
    fx, fy = POSITIONS[scene.position]
    cx, cy, r = (fx * SIZE + jx) * SUPER, (fy * SIZE + jy) * SUPER, (13.0 + jr * 0.75) * SUPER
    image = Image.new("RGB", (s, s), COLORS[scene.background])
    pen = ImageDraw.Draw(image)
    fill = COLORS[scene.color]
    if scene.shape == "circle":
        pen.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif scene.shape == "square":
        h = r * 0.85
        pen.rectangle([cx - h, cy - h, cx + h, cy + h], fill=fill)
    elif scene.shape == "triangle":
        pen.polygon(_triangle(cx, cy, r), fill=fill)
    else:
        pen.polygon(_star(cx, cy, r * 1.15), fill=fill)
    return np.asarray(image.resize((SIZE, SIZE), Image.Resampling.BOX))


def make_dataset(variants: int, seed: int) -> tuple[list[Scene], np.ndarray]:
    """Every scene ``variants`` times, each jittered: the scenes and ``[N, SIZE, SIZE, 3]`` uint8."""
    rng = np.random.default_rng(seed)
    scenes = [scene for scene in all_scenes() for _ in range(variants)]
    return scenes, np.stack([draw(scene, rng) for scene in scenes])


# ----------------------------------------------------------------------------- configs


def configs(vocab_size: int) -> dict[str, dict[str, Any]]:
    """The three modules' diffusers configs (SD1's block types, scaled down)."""
    from vortex_jupyter.nodes.diffusion.models import tiny_configs

    unet = {  # 8x8 -> 4x4 -> 2x2: at 2x2 every cell is a quadrant, so "at the left" is easy to place
        "sample_size": SIZE // 8, "in_channels": 4, "out_channels": 4, "layers_per_block": 1,
        "block_out_channels": [48, 96, 96], "norm_num_groups": 8,
        "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
        "cross_attention_dim": 64, "attention_head_dim": 8,
    }
    vae = {
        "in_channels": 3, "out_channels": 3, "latent_channels": 4, "layers_per_block": 1,
        # 4 channels a norm group at least: a group of one channel normalises a flat
        # background's colour away, and the decoder then cannot tell colours apart
        "block_out_channels": [16, 16, 32, 64], "norm_num_groups": 4, "sample_size": SIZE,
        "down_block_types": ["DownEncoderBlock2D"] * 4, "up_block_types": ["UpDecoderBlock2D"] * 4,
        "scaling_factor": SD1_SCALE,
    }
    text = {
        "vocab_size": vocab_size, "hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 3,
        "num_attention_heads": 4, "max_position_embeddings": 77, "projection_dim": 64,
        "bos_token_id": vocab_size - 2, "eos_token_id": vocab_size - 1, "pad_token_id": vocab_size - 1,
        "hidden_act": "quick_gelu",
    }
    return {"unet": unet, "vae": vae, "text_encoder": text, "scheduler": tiny_configs()["scheduler"]}


def build(cfg: dict[str, dict[str, Any]], seed: int) -> dict[str, Any]:
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**cfg["unet"])
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(**cfg["vae"])
    torch.manual_seed(seed + 2)
    text = CLIPTextModel(CLIPTextConfig(**cfg["text_encoder"]))
    return {"unet": unet, "vae": vae, "text_encoder": text}


# ----------------------------------------------------------------------------- training loops


def _lr(step: int, steps: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


class Log:
    def __init__(self, what: str, steps: int, every: int) -> None:
        self.what, self.steps, self.every, self.start, self.total = what, steps, every, time.time(), 0.0

    def __call__(self, step: int, loss: float) -> None:
        self.total += loss
        if (step + 1) % self.every == 0 or step + 1 == self.steps:
            took = time.time() - self.start
            n = (step % self.every) + 1
            print(f"[{self.what}] step {step + 1}/{self.steps}  loss {self.total / n:.4f}  "
                  f"{took:.0f}s  ({took / (step + 1):.2f}s/step)", flush=True)
            self.total = 0.0


def to_pixels(images: np.ndarray) -> torch.Tensor:
    """uint8 ``[N, H, W, 3]`` -> the VAE's input range [-1, 1], ``[N, 3, H, W]``."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def train_vae(vae: Any, images: np.ndarray, steps: int, batch: int, seed: int) -> None:
    """A plain autoencoder through the posterior's mean, on mean squared error.

    Sampling the posterior (a KL-regularised VAE) made the decoder learn far slower here: at the
    start the noise drowns the latent. The posterior's variance is set afterwards, small and fixed
    (``normalize_latents``)."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(vae.parameters(), lr=2e-3, weight_decay=0.0)
    log = Log("vae", steps, 50)
    vae.train()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = _lr(step, steps, 2e-3, 30)
        idx = torch.randint(0, len(images), (batch,), generator=gen)
        x = to_pixels(images[idx.numpy()])
        out = vae.decode(vae.encode(x).latent_dist.mean).sample
        loss = (out - x).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        log(step, loss.detach().item())
    vae.eval()


@torch.no_grad()
def encode_all(vae: Any, images: np.ndarray, batch: int = 256) -> torch.Tensor:
    """The posterior means of all images (raw VAE space)."""
    parts = [vae.encode(to_pixels(images[i:i + batch])).latent_dist.mean for i in range(0, len(images), batch)]
    return torch.cat(parts)


@torch.no_grad()
def normalize_latents(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    """Fold a per-channel re-centring and scaling into the VAE so that ``SD1_SCALE * raw`` has
    mean 0, std 1 per channel; returns the latents in that (the sampler's) space.

    New raw latent ``z' = k * (z - m)``: ``quant_conv``'s mean rows are scaled and shifted;
    ``post_quant_conv`` takes ``z' / k + m``. The log-variance rows become a constant: a
    posterior std of ``POSTERIOR_STD`` in the sampler's space."""
    c = latents.shape[1]
    m = latents.mean(dim=(0, 2, 3))
    k = 1.0 / (SD1_SCALE * latents.std(dim=(0, 2, 3)))
    q, p = vae.quant_conv, vae.post_quant_conv
    q.weight[:c] *= k.view(-1, 1, 1, 1)
    q.bias[:c] = (q.bias[:c] - m) * k
    q.weight[c:] = 0.0
    q.bias[c:] = 2 * math.log(POSTERIOR_STD / SD1_SCALE)
    p.bias += (p.weight.sum(dim=(2, 3)) @ m)  # a 1x1 conv: W @ m is the shift's effect
    p.weight /= k.view(1, -1, 1, 1)
    return (latents - m.view(1, -1, 1, 1)) * k.view(1, -1, 1, 1) * SD1_SCALE


def prompt_ids(scenes: list[Scene]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Token ids exactly as CLIPTextEncode makes them (the package's offline tokenizer, 77 ids):
    ``(full [N, 77], short [N, 77], empty [77])``; ``short`` leaves the centre's phrase out
    (the same as ``full`` elsewhere)."""
    from vortex_jupyter.nodes.diffusion.clip_tokenizer import offline
    from vortex_jupyter.nodes.diffusion.text import token_chunks

    tok = offline()
    cache: dict[str, torch.Tensor] = {}

    def ids(text: str) -> torch.Tensor:
        if text not in cache:
            chunks = token_chunks(tok, text)
            assert chunks.shape == (1, 77), (text, chunks.shape)
            cache[text] = chunks[0]
        return cache[text]

    full = torch.stack([ids(prompt(s)) for s in scenes])
    short = torch.stack([ids(prompt(s, say_position=False)) for s in scenes])
    return full, short, ids("")


def noise_schedule() -> torch.Tensor:
    """SD1's alphas_cumprod: 1000 steps, scaled_linear betas 0.00085..0.012."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0).float()


def _pick_ids(scene_idx: torch.Tensor, ids: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
              gen: torch.Generator, p_empty: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One prompt per scene: half the time without the centre's phrase, ``p_empty`` of the time "";
    and which rows were dropped to ""."""
    full, short, empty = ids
    coin = torch.rand(len(scene_idx), generator=gen)
    chosen = torch.where((coin < 0.5).unsqueeze(1), short[scene_idx], full[scene_idx])
    drop = torch.rand(len(scene_idx), generator=gen) < p_empty
    return torch.where(drop.unsqueeze(1), empty.unsqueeze(0), chosen), drop


def scene_labels(scenes: list[Scene]) -> torch.Tensor:
    """``[N, 4]``: each scene's colour, shape, background and position as indices."""
    from vortex_jupyter.nodes.diffusion.shapes.scenes import SHAPES

    colors, positions = list(COLORS), list(POSITIONS)
    return torch.tensor([[colors.index(s.color), SHAPES.index(s.shape), colors.index(s.background),
                          positions.index(s.position)] for s in scenes])


class Probe(torch.nn.Module):
    """Linear read-outs of the text encoder's pooled output: which colour, shape, background and
    position the prompt names. Trained with the text encoder and then thrown away.

    Why: learning only through the UNet, the text encoder kept what paid first (colours) and
    mapped "at the left" and "at the right" to nearly the same vectors (distance 0.04 against
    2.2 for another colour), so the UNet never learned to place objects. The probe makes every
    word of the grammar matter to the encoder from the start."""

    def __init__(self, width: int, sizes: tuple[int, ...]) -> None:
        super().__init__()
        self.sizes = sizes
        self.head = torch.nn.Linear(width, sum(sizes))

    def loss(self, pooled: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        logits = self.head(pooled).split(self.sizes, dim=1)
        return sum((F.cross_entropy(lg, labels[:, i]) for i, lg in enumerate(logits)), torch.zeros(()))


def train_unet(unet: Any, text: Any, latents: torch.Tensor, ids: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
               labels: torch.Tensor, steps: int, batch: int, seed: int, per_scene: int = 4,
               snapshot: Any = None) -> tuple[Any, Any]:
    """UNet + text encoder, jointly; returns their EMA copies (what ships).

    A batch is ``batch // per_scene`` scenes, ``per_scene`` drawings (and noise levels) each, so the
    text encoder (77 tokens a prompt, the costly part) runs once per scene, not once per sample.
    ``ids`` and ``labels`` rows are per scene; ``latents`` are ``len(ids[0])`` scenes x variants,
    in order. The loss adds ``PROBE_WEIGHT`` x the ``Probe``'s (not for empty prompts).
    ``snapshot(step, ema_unet, ema_text)`` is called after every step (to save progress)."""
    gen = torch.Generator().manual_seed(seed)
    alphas = noise_schedule()
    n_scenes = len(ids[0])
    variants = len(latents) // n_scenes
    torch.manual_seed(seed)
    probe = Probe(int(text.config.hidden_size), (len(COLORS), 4, len(COLORS), len(POSITIONS)))
    params = list(unet.parameters()) + list(text.parameters())
    opt = torch.optim.AdamW(params + list(probe.parameters()), lr=1e-3, weight_decay=0.01)
    ema_unet, ema_text = copy.deepcopy(unet).eval(), copy.deepcopy(text).eval()
    ema_params = list(ema_unet.parameters()) + list(ema_text.parameters())
    log = Log("unet", steps, 50)
    unet.train()
    text.train()
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = _lr(step, steps, 1e-3, 200)
        scene_idx = torch.randint(0, n_scenes, (batch // per_scene,), generator=gen)
        idx = scene_idx.repeat_interleave(per_scene) * variants + torch.randint(0, variants, (len(scene_idx) * per_scene,), generator=gen)
        x0 = latents[idx]
        t = torch.randint(0, 1000, (len(idx),), generator=gen)
        noise = torch.randn(x0.shape, generator=gen)
        a = alphas[t].view(-1, 1, 1, 1)
        xt = a.sqrt() * x0 + (1 - a).sqrt() * noise
        rows, drop = _pick_ids(scene_idx, ids, gen, 0.1)
        encoded = text(rows)
        cond = encoded.last_hidden_state.repeat_interleave(per_scene, 0)
        pred = unet(xt, t, cond).sample
        snr = alphas[t] / (1 - alphas[t])
        weight = torch.clamp(snr, max=5.0) / snr  # min-SNR-5 (Hang et al. 2023), epsilon form
        loss = (weight * (pred - noise).pow(2).mean(dim=(1, 2, 3))).mean()
        if not bool(drop.all()):
            loss = loss + PROBE_WEIGHT * probe.loss(encoded.pooler_output[~drop], labels[scene_idx[~drop]])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params + list(probe.parameters()), 1.0)
        opt.step()
        decay = min(0.999, (1 + step) / (10 + step))
        with torch.no_grad():
            torch._foreach_lerp_(ema_params, params, 1 - decay)
        log(step, loss.detach().item())
        if snapshot is not None:
            snapshot(step + 1, ema_unet, ema_text)
    return ema_unet, ema_text


# ----------------------------------------------------------------------------- saving


def save(out: Path, mods: dict[str, Any], settings: dict[str, Any]) -> str:
    """``vortex-shapes.safetensors`` (fp16, SD layout) and ``vortex-shapes.json``; the sha256."""
    from vortex_jupyter.nodes.diffusion.models import write_single_file

    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{NAME}.safetensors"
    half = {name: copy.deepcopy(module).to(torch.float16) for name, module in mods.items()}
    write_single_file(path, half)
    path.chmod(0o644)  # safetensors writes 0600; package data is read by everyone
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    record = {"file": path.name, "sha256": digest, "bytes": path.stat().st_size, "training": settings}
    (out / f"{NAME}.json").write_text(json.dumps(record, indent=1) + "\n")
    return digest


def vae_stage(vae: Any, images: np.ndarray, args: argparse.Namespace) -> tuple[torch.Tensor, float]:
    """Train the VAE and return the normalised latents and the seconds training took, or reuse
    all three from ``args.cache`` (the same settings give the same VAE: the stage is deterministic)."""
    config = {k: v for k, v in vae.config.items() if not k.startswith("_")}  # "_use_default_values": set order
    key = hashlib.sha256(json.dumps([args.vae_steps, args.vae_batch, args.variants, args.seed, args.threads, config],
                                    sort_keys=True, default=str).encode()).hexdigest()[:12]
    cached = args.cache / f"vae-{key}.pt" if args.cache else None
    if cached is not None and cached.is_file():
        saved = torch.load(cached, weights_only=True)
        vae.load_state_dict(saved["vae"])
        vae.eval()
        print(f"reused the VAE from {cached} (it took {float(saved['seconds']):.0f}s to train)", flush=True)
        return saved["latents"], float(saved["seconds"])
    start = time.time()
    train_vae(vae, images, args.vae_steps, args.vae_batch, args.seed + 10)
    latents = normalize_latents(vae, encode_all(vae, images))
    took = time.time() - start
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"vae": vae.state_dict(), "latents": latents, "seconds": torch.tensor(took)}, cached)
    return latents, took


def _snapshots(args: argparse.Namespace, vae: Any) -> Any:
    """Every ``--snapshot-every`` steps, the EMA model as a checkpoint in ``--cache`` (to try it
    with ``check_shapes.py`` while training goes on)."""
    if not args.cache or not args.snapshot_every:
        return None
    from vortex_jupyter.nodes.diffusion.models import write_single_file

    def snapshot(step: int, unet: Any, text: Any) -> None:
        if step % args.snapshot_every == 0:
            half = {k: copy.deepcopy(m).to(torch.float16) for k, m in
                    (("unet", unet), ("vae", vae), ("text_encoder", text))}
            write_single_file(args.cache / f"{NAME}-step{step}.safetensors", half)
    return snapshot


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=PACKAGE_DIR, help="where the .safetensors and .json go")
    p.add_argument("--vae-steps", type=int, default=1800)
    p.add_argument("--vae-batch", type=int, default=16)
    p.add_argument("--unet-steps", type=int, default=4000)
    p.add_argument("--unet-batch", type=int, default=64)
    p.add_argument("--variants", type=int, default=6, help="jittered drawings per scene")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (1: on a shared machine a second thread mostly waits for the first)")
    p.add_argument("--cache", type=Path, help="keep the trained VAE and its latents here, to rerun only the UNet")
    p.add_argument("--snapshot-every", type=int, default=0, help="with --cache: save the model every N UNet steps")
    p.add_argument("--quick", action="store_true", help="a few minutes: 300 VAE, 600 UNet steps")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.quick:
        args.vae_steps, args.unet_steps = 300, 600
    torch.set_num_threads(args.threads)
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(args.seed)
    start = time.time()
    from vortex_jupyter.nodes.diffusion.tokenizer import build_vocab

    cfg = configs(len(build_vocab()[0]))
    mods = build(cfg, args.seed)
    _, images = make_dataset(args.variants, args.seed)
    print(f"{len(images)} drawings of {len(all_scenes())} scenes; params: "
          + ", ".join(f"{k} {sum(p.numel() for p in m.parameters()) / 1e6:.2f}M" for k, m in mods.items()), flush=True)
    t_start_vae = time.time()
    latents, t_vae = vae_stage(mods["vae"], images, args)
    reused = time.time() - t_start_vae < t_vae  # the VAE came from --cache: count its training time
    t_start_unet = time.time()
    ids, labels = prompt_ids(all_scenes()), scene_labels(all_scenes())
    mods["unet"], mods["text_encoder"] = train_unet(mods["unet"], mods["text_encoder"], latents, ids, labels,
                                                    args.unet_steps, args.unet_batch, args.seed + 20,
                                                    snapshot=_snapshots(args, mods["vae"]))
    t_unet = time.time() - t_start_unet
    took = time.time() - start + (t_vae if reused else 0.0)
    settings = {k: v for k, v in vars(args).items() if k not in ("out", "cache", "snapshot_every", "quick")}
    settings.update(seconds_total=round(took), seconds_vae=round(t_vae), seconds_unet=round(t_unet),
                    torch=torch.__version__, cpu_count=os.cpu_count())
    digest = save(args.out, mods, settings)
    print(f"wrote {args.out / (NAME + '.safetensors')} in {took / 60:.1f} min; sha256 {digest}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
