"""Does ``vortex-shapes`` draw what its prompts say? Render prompts, classify the images, print a table.

Renders ``--n`` (default 200) prompt/seed pairs through the real pipeline (a ``vx.Graph`` of
CheckpointLoaderSimple -> CLIPTextEncode (prompt and an empty negative) -> EmptyLatentImage 64x64
-> KSampler (default: 20 steps, euler, normal, cfg 6) -> VAEDecode), classifies every image with a
deterministic classifier, and prints the accuracy of background colour, object colour, shape,
all three together, and position, next to chance (a uniform guess among the scenes the model
knows). The same classifier also runs on the training script's own drawings of the same scenes
and on their round trip through the checkpoint's VAE, so the table also says how far the
classifier itself can be trusted and what the VAE lets the model reach.

The classifier (``classify``), by simple geometry:

- every pixel gets its nearest palette colour (``scenes.COLORS``);
- background: the most common colour of the 2-pixel frame;
- object: the most common colour among pixels far (> 60 in RGB) from the background colour; its
  mask: the pixels nearer that colour than the background's (projected on the line between);
- shape, from the mask: a star is the only non-convex shape (solidity, area over convex-hull
  area, below 0.75); a triangle (pointing up) has under 40% of its area above its bounding box's
  middle; a star whose points came out soft still has solidity < 0.85 or fills < 0.6 of its box;
  a square fills its box (> 0.86), a circle about pi/4 of it;
- position: the nearest of the five positions to the object's centroid.

Thresholds were set on the training drawings and on their round trip through the model's own VAE
(whose decoder softens corners and star points): the table's last two columns are the
classifier's accuracy on those, the second an upper bound for what the model can reach.

Usage::

    python scripts/check_shapes.py                      # 200 samples of the built-in vortex-shapes
    python scripts/check_shapes.py --n 50 --sheet /tmp/sheet.png   # fewer, and a contact sheet
    python scripts/check_shapes.py --ckpt my-shapes.safetensors    # a file in the checkpoints folder
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from vortex_jupyter.nodes.diffusion.shapes.scenes import (  # noqa: E402
    COLORS,
    POSITIONS,
    SHAPES,
    Scene,
    all_scenes,
    prompt,
)

_NAMES = list(COLORS)
_PALETTE = np.array([COLORS[n] for n in _NAMES], dtype=np.float64)
FAR = 60.0  # RGB distance from the background colour that counts as "not background"


class Seen(NamedTuple):
    background: str
    color: str | None
    shape: str | None
    position: str | None


# ----------------------------------------------------------------------------- classifier


def _labels(rgb: np.ndarray) -> np.ndarray:
    d = ((rgb[:, :, None, :] - _PALETTE[None, None]) ** 2).sum(-1)
    return d.argmin(-1)


def _hull_area(points: np.ndarray) -> float:
    """Area of the convex hull of ``[N, 2]`` points (Andrew's monotone chain, shoelace)."""
    pts = sorted(set(map(tuple, points.tolist())))
    if len(pts) < 3:
        return 0.0

    def half(seq: list[tuple[float, float]]) -> list[tuple[float, float]]:
        out: list[tuple[float, float]] = []
        for p in seq:
            while len(out) >= 2 and ((out[-1][0] - out[-2][0]) * (p[1] - out[-2][1])
                                     - (out[-1][1] - out[-2][1]) * (p[0] - out[-2][0])) <= 0:
                out.pop()
            out.append(p)
        return out

    hull = half(pts)[:-1] + half(pts[::-1])[:-1]
    xs, ys = np.array([p[0] for p in hull]), np.array([p[1] for p in hull])
    return float(0.5 * abs(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1))))


def shape_of(mask: np.ndarray) -> str | None:
    """circle / square / triangle / star for a boolean object mask (None when too small)."""
    ys, xs = np.nonzero(mask)
    if len(xs) < 12:
        return None
    area = float(len(xs))
    fill = area / float((xs.max() - xs.min() + 1) * (ys.max() - ys.min() + 1))
    corners = np.concatenate([np.stack([xs + dx, ys + dy], 1) for dx in (0, 1) for dy in (0, 1)])
    solidity = area / max(_hull_area(corners), 1.0)
    top = float((ys + 0.5 < (ys.min() + ys.max() + 1) / 2).sum()) / area  # share above the box's middle
    if solidity < 0.75:
        return "star"
    if top < 0.40:
        return "triangle"
    if solidity < 0.85 or fill < 0.6:
        return "star"
    return "square" if fill > 0.86 else "circle"


def classify(image: np.ndarray) -> Seen:
    """What a ``[H, W, 3]`` image (uint8, or float in [0, 1]) shows."""
    rgb = image.astype(np.float64) * (255.0 if image.dtype != np.uint8 else 1.0)
    labels = _labels(rgb)
    frame = np.concatenate([labels[:2].ravel(), labels[-2:].ravel(), labels[:, :2].ravel(), labels[:, -2:].ravel()])
    bg = int(np.bincount(frame, minlength=len(_NAMES)).argmax())
    far = np.sqrt(((rgb - _PALETTE[bg]) ** 2).sum(-1)) > FAR
    counts = np.bincount(labels[far], minlength=len(_NAMES))
    counts[bg] = 0
    if counts.max() < 12:
        return Seen(_NAMES[bg], None, None, None)
    fg = int(counts.argmax())
    # the object: pixels nearer the object's colour than the background's, along the line between them
    axis = _PALETTE[fg] - _PALETTE[bg]
    mask = ((rgb - _PALETTE[bg]) @ axis) / (axis @ axis) > 0.5
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    cx, cy = xs.mean() / w, ys.mean() / h
    position = min(POSITIONS, key=lambda p: (POSITIONS[p][0] - cx) ** 2 + (POSITIONS[p][1] - cy) ** 2)
    return Seen(_NAMES[bg], _NAMES[fg], shape_of(mask), position)


# ----------------------------------------------------------------------------- rendering


class Case(NamedTuple):
    scene: Scene
    text: str
    seed: int


def cases(n: int, seed: int = 0) -> list[Case]:
    """``n`` scenes (every position; the centre's phrase said half the time) with their seeds."""
    rng = np.random.default_rng(seed)
    scenes = all_scenes()
    out = []
    for i in rng.choice(len(scenes), size=n, replace=n > len(scenes)):
        scene = scenes[int(i)]
        text = prompt(scene, say_position=bool(rng.integers(2)))
        out.append(Case(scene, text, int(rng.integers(0, 2**31))))
    return out


class Renderer:
    """One graph, re-run per case (the loader and the negative prompt stay cached)."""

    def __init__(self, ckpt: str, steps: int = 20, cfg: float = 6.0, sampler: str = "euler",
                 scheduler: str = "normal", executor: str = "inline") -> None:
        import vortex_jupyter as vx

        self.executor = executor
        g = self.graph = vx.Graph()
        ck = g.add("CheckpointLoaderSimple", ckpt_name=ckpt)
        self.pos = g.add("CLIPTextEncode", text="", clip=ck.out(1))
        neg = g.add("CLIPTextEncode", text="", clip=ck.out(1))
        latent = g.add("EmptyLatentImage", width=64, height=64, batch_size=1)
        self.sampler = g.add("KSampler", model=ck.out(0), positive=self.pos.out(0), negative=neg.out(0),
                             latent_image=latent.out(0), seed=0, steps=steps, cfg=cfg, sampler_name=sampler,
                             scheduler=scheduler, denoise=1.0)
        self.decode = g.add("VAEDecode", samples=self.sampler.out(0), vae=ck.out(2))

    def __call__(self, text: str, seed: int) -> np.ndarray:
        self.pos.params["text"] = text
        self.sampler.params["seed"] = seed
        run = self.graph.run(self.executor)
        if run.errors:
            raise RuntimeError(f"the render of {text!r} (seed {seed}) failed: {run.errors}")
        return np.asarray(run.outputs[self.decode.id][0])[0]


# ----------------------------------------------------------------------------- the table


_CHANCE = {"background": 1 / len(COLORS), "object colour": 1 / (len(COLORS) - 1), "shape": 1 / len(SHAPES),
           "all three": 1 / (len(COLORS) * (len(COLORS) - 1) * len(SHAPES)), "position": 1 / len(POSITIONS)}


def score(pairs: list[tuple[Scene, Seen]]) -> dict[str, float]:
    hits: dict[str, list[bool]] = {k: [] for k in _CHANCE}
    for truth, seen in pairs:
        bg, fg, sh = seen.background == truth.background, seen.color == truth.color, seen.shape == truth.shape
        for key, ok in (("background", bg), ("object colour", fg), ("shape", sh), ("all three", bg and fg and sh),
                        ("position", seen.position == truth.position)):
            hits[key].append(ok)
    return {k: float(np.mean(v)) for k, v in hits.items()}


def table(columns: dict[str, dict[str, float]], n: int) -> str:
    """Rows: what was judged; columns: the model's renders, chance, then the references."""
    heads = list(columns)
    lines = [f"{'':15s}" + "".join(f"{h:>{max(10, len(h) + 2)}s}" for h in heads)]
    for key in _CHANCE:
        lines.append(f"{key:15s}" + "".join(f"{columns[h][key]:>{max(10, len(h) + 2)}.1%}" for h in heads))
    lines.append(f"({n} prompt/seed samples)")
    return "\n".join(lines)


def contact_sheet(images: list[np.ndarray], path: Path, columns: int = 20) -> None:
    from PIL import Image

    rows = -(-len(images) // columns)
    sheet = np.zeros((rows * 64, columns * 64, 3), dtype=np.uint8)
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        sheet[r * 64:(r + 1) * 64, c * 64:(c + 1) * 64] = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    Image.fromarray(sheet).save(path)


def _references(ckpt: str, chosen: list[Case]) -> dict[str, dict[str, float]]:
    """The classifier on the training script's own (jittered) drawings of the same scenes, and on
    those drawings after a round trip through the checkpoint's VAE (VAEEncode -> VAEDecode)."""
    import torch
    from train_shapes import draw

    from vortex_jupyter.nodes.diffusion.loaders import load_checkpoint
    from vortex_jupyter.nodes.diffusion.vae import vae_decode, vae_encode

    rng = np.random.default_rng(1)
    drawings = np.stack([draw(c.scene, rng) for c in chosen])
    vae = load_checkpoint(ckpt)[2]
    trip = vae_decode(vae, vae_encode(vae, torch.from_numpy(drawings.astype(np.float32) / 255.0)))
    return {"drawings": score([(c.scene, classify(d)) for c, d in zip(chosen, drawings)]),
            "VAE round trip": score([(c.scene, classify(t)) for c, t in zip(chosen, trip)])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ckpt", default="vortex-shapes")
    p.add_argument("--n", type=int, default=200)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--cfg", type=float, default=6.0)
    p.add_argument("--sampler", default="euler")
    p.add_argument("--seed", type=int, default=0, help="picks the scenes and their sampling seeds")
    p.add_argument("--sheet", type=Path, help="also save every image in one PNG")
    p.add_argument("--verbose", action="store_true", help="print every case and what was seen")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (on a busy machine two threads wait on each other: 20x slower here)")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    chosen = cases(args.n, args.seed)
    render = Renderer(args.ckpt, steps=args.steps, cfg=args.cfg, sampler=args.sampler)
    start, images, pairs = time.time(), [], []
    for case in chosen:
        image = render(case.text, case.seed)
        seen = classify(image)
        images.append(image)
        pairs.append((case.scene, seen))
        if args.verbose:
            print(f"{case.text!r:60s} seed {case.seed:>10d} -> {tuple(seen)}", flush=True)
    took = time.time() - start
    columns = {args.ckpt: score(pairs), "chance": _CHANCE, **_references(args.ckpt, chosen)}
    print(table(columns, len(chosen)))
    print(f"{took:.0f}s, {took / len(chosen):.2f}s an image ({args.steps} steps {args.sampler}, cfg {args.cfg})")
    if args.sheet:
        contact_sheet(images, args.sheet)
        print(f"contact sheet: {args.sheet}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
