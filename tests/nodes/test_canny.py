"""Canny: our numpy port against kornia's algorithm written out in torch (convolutions, zero-padded
NMS, the iterate-until-stable hysteresis), plus invariants any Canny detector must satisfy."""

from __future__ import annotations

import numpy as np
import pytest

from vortex_jupyter.nodes.builtin.canny import Canny, _hysteresis

torch = pytest.importorskip("torch")
F = torch.nn.functional


def kornia_canny(image: np.ndarray, low: float, high: float) -> np.ndarray:
    """kornia.filters.canny(x, low, high)[1] with its defaults (5x5, sigma 1, hysteresis), in torch."""
    x = torch.from_numpy(image).movedim(-1, 1)  # [B, C, H, W]
    if x.shape[1] == 3:
        x = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    g = torch.exp(-(torch.arange(5, dtype=torch.float32) - 2) ** 2 / 2.0)
    g = g / g.sum()
    x = F.conv2d(F.pad(x, (2, 2, 0, 0), mode="reflect"), g.view(1, 1, 1, 5))
    x = F.conv2d(F.pad(x, (0, 0, 2, 2), mode="reflect"), g.view(1, 1, 5, 1))
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    gx, gy = F.conv2d(padded, sobel.view(1, 1, 3, 3)), F.conv2d(padded, sobel.t().reshape(1, 1, 3, 3))
    magnitude = torch.sqrt(gx * gx + gy * gy + 1e-6)
    angle = torch.round(torch.rad2deg(torch.atan2(gy, gx)) / 45) * 45
    nms = torch.zeros(8, 1, 3, 3)
    for k, (dy, dx) in enumerate([(0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1)]):
        nms[k, 0, 1, 1], nms[k, 0, 1 + dy, 1 + dx] = 1.0, -1.0
    differences = F.conv2d(magnitude, nms, padding=1)
    pos = ((angle / 45) % 8).long()
    neg = ((angle / 45 + 4) % 8).long()
    is_max = torch.minimum(differences.gather(1, pos), differences.gather(1, neg)) > 0
    magnitude = magnitude * is_max
    edges = (magnitude > low) * 0.5 + (magnitude > high) * 0.5
    neighbours = torch.zeros(8, 1, 3, 3)
    for k, (dy, dx) in enumerate([(0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1)]):
        neighbours[k, 0, 1 + dy, 1 + dx] = 1.0
    old = -torch.ones_like(edges)
    while (old != edges).any():
        weak, strong = (edges == 0.5).float(), (edges == 1).float()
        grown = (F.conv2d(edges, neighbours, padding=1) == 1).any(1, keepdim=True).float() * weak + strong
        old, edges = edges, grown + (grown == 0) * weak * 0.5
    return grown[:, 0].numpy()


def smooth_image(seed: int, shape=(2, 48, 40, 3)) -> np.ndarray:
    """Random blobs and ramps: edges of every orientation and strength, no exact ties."""
    rng = np.random.default_rng(seed)
    b, h, w, c = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.zeros(shape, np.float32)
    for i in range(b):
        for _ in range(6):
            cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(4, 14)
            out[i] += (np.hypot(yy - cy, xx - cx) < r)[..., None] * rng.uniform(0.1, 0.6, c).astype(np.float32)
        out[i] += (xx / w * rng.uniform(0, 0.3))[..., None]
    return np.clip(out + rng.normal(0, 0.01, shape).astype(np.float32), 0, 1)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize(("low", "high"), [(0.1, 0.6), (0.4, 0.8), (0.05, 0.2), (0.3, 0.3)])
def test_edges_match_kornias_algorithm_pixel_for_pixel(seed, low, high):
    image = smooth_image(seed)
    (ours,) = Canny().detect_edge(image, low, high)
    reference = kornia_canny(image, low, high)
    assert ours.shape == (*image.shape[:3], 3) and ours.dtype == np.float32
    differing = np.count_nonzero(ours[..., 0] != reference)
    # float32 sums in another order may flip a pixel sitting exactly on a threshold; none here
    assert differing == 0, f"{differing} of {reference.size} pixels differ"
    assert np.array_equal(ours[..., 0], ours[..., 2])


def test_a_grayscale_image_and_its_rgb_copy_give_the_same_edges():
    gray = smooth_image(7, (1, 32, 32, 1))
    (from_gray,) = Canny().detect_edge(gray, 0.1, 0.3)
    (from_rgb,) = Canny().detect_edge(np.repeat(gray, 3, axis=-1), 0.1, 0.3)
    np.testing.assert_array_equal(from_gray, from_rgb)
    assert np.array_equal(from_gray[..., 0], kornia_canny(gray, 0.1, 0.3))


def test_a_vertical_step_gives_a_one_pixel_wide_vertical_line():
    image = np.zeros((1, 20, 20, 3), np.float32)
    image[:, :, 10:] = 1.0
    (edges,) = Canny().detect_edge(image, 0.2, 0.5)
    columns = np.flatnonzero(edges[0, :, :, 0].any(axis=0))
    assert len(columns) == 1 and columns[0] in (9, 10)  # thinned by non-maximum suppression
    assert edges[0, :, columns[0], 0].all()  # and unbroken from top to bottom


def test_a_flat_image_has_no_edges_and_higher_thresholds_never_add_any():
    assert not Canny().detect_edge(np.full((1, 8, 8, 3), 0.5, np.float32), 0.01, 0.02)[0].any()
    image = smooth_image(3)
    loose = Canny().detect_edge(image, 0.05, 0.3)[0]
    strict = Canny().detect_edge(image, 0.2, 0.6)[0]
    assert strict.sum() < loose.sum() and not (strict > loose).any()


def iterative_hysteresis(strong: np.ndarray, weak: np.ndarray) -> np.ndarray:
    """kornia's loop: weak pixels next to strong ones become strong, until nothing changes."""
    strong = strong.copy()
    while True:
        padded = np.pad(strong, ((0, 0), (1, 1), (1, 1)))
        h, w = strong.shape[1:]
        near = np.zeros_like(strong)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                near |= padded[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
        grown = strong | (weak & near)
        if np.array_equal(grown, strong):
            return strong
        strong = grown


def test_hysteresis_keeps_exactly_the_weak_pixels_connected_to_strong_ones():
    weak = np.zeros((1, 9, 30), bool)
    weak[0, 4, 1:29] = True  # a long weak line ...
    weak[0, 5, 29] = True  # ... continued diagonally (8-connectivity)
    weak[0, 0:2, 0:3] = True  # a weak blob touching nothing strong
    strong = np.zeros_like(weak)
    strong[0, 4, 0] = True  # one strong pixel at the line's end holds it all
    kept = _hysteresis(strong, weak)
    assert kept[0, 4, :29].all() and kept[0, 5, 29] and not kept[0, 0:2, 0:3].any()
    rng = np.random.default_rng(0)
    for _ in range(20):  # random maps: labelling components == growing until stable
        weak = rng.random((2, 40, 40)) < 0.45
        strong = (rng.random((2, 40, 40)) < 0.02) & ~weak
        np.testing.assert_array_equal(_hysteresis(strong, weak), iterative_hysteresis(strong, weak))


def test_rgba_images_use_their_rgb_channels():
    rgb = smooth_image(1, (1, 16, 16, 3))
    rgba = np.concatenate([rgb, np.full((1, 16, 16, 1), 0.3, np.float32)], axis=-1)
    np.testing.assert_array_equal(Canny().detect_edge(rgba, 0.1, 0.4)[0], Canny().detect_edge(rgb, 0.1, 0.4)[0])


def test_torch_tensors_work_as_input():
    image = smooth_image(2)
    np.testing.assert_array_equal(Canny().detect_edge(torch.from_numpy(image), 0.1, 0.5)[0],
                                  Canny().detect_edge(image, 0.1, 0.5)[0])


@pytest.mark.parametrize(("image", "low", "high", "problem"), [
    (np.zeros((1, 8, 8, 3), np.float32), 0.6, 0.4, "low_threshold 0.6 is above high_threshold 0.4"),
    (np.zeros((1, 2, 8, 3), np.float32), 0.1, 0.4, "the 5x5 blur needs at least 3x3 pixels"),
    (np.zeros((1, 8, 8, 2), np.float32), 0.1, 0.4, "has 2 channels"),
    (np.zeros((8, 8), np.float32), 0.1, 0.4, "an IMAGE is [batch, height, width, channels]"),
])
def test_bad_input_is_a_clear_error(image, low, high, problem):
    with pytest.raises(ValueError) as caught:
        Canny().detect_edge(image, low, high)
    assert problem in str(caught.value) and "(fix: " in str(caught.value)
