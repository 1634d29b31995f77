"""ResizeImageMaskNode, ResizeAndPadImage, BatchImagesNode, ImageStitch, JoinImageWithAlpha and
EmptyImage: ComfyUI's size rules (worked out by hand below) and pixels (torch's interpolate as
the reference, which is what ComfyUI's common_upscale calls)."""

from __future__ import annotations

import numpy as np
import pytest

from vortex_jupyter.nodes.builtin.combine import BatchImagesNode, EmptyImage, ImageStitch, JoinImageWithAlpha
from vortex_jupyter.nodes.builtin.resize import ResizeAndPadImage, ResizeImageMaskNode

torch = pytest.importorskip("torch")
F = torch.nn.functional


def rand_image(h: int, w: int, c: int = 3, b: int = 1, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((b, h, w, c), dtype=np.float32)


def interpolate(images: np.ndarray, width: int, height: int, mode: str) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(images)).movedim(-1, 1)
    kwargs = {"align_corners": False} if mode in ("bilinear", "bicubic") else {}
    return F.interpolate(x, size=(height, width), mode=mode, **kwargs).movedim(1, -1).numpy()


def resize(x, resize_type, method="bilinear", **settings):
    return ResizeImageMaskNode().execute(x, resize_type, method, **{f"resize_type.{k}": v for k, v in settings.items()})[0]


# ----------------------------------------------------------------------------- ResizeImageMaskNode

IMAGE = rand_image(30, 40)  # height 30, width 40


@pytest.mark.parametrize(("resize_type", "settings", "size"), [
    ("scale dimensions", {"width": 64, "height": 48, "crop": "disabled"}, (64, 48)),
    ("scale dimensions", {"width": 0, "height": 60, "crop": "disabled"}, (80, 60)),  # 0 keeps the aspect
    ("scale dimensions", {"width": 0, "height": 0, "crop": "disabled"}, (40, 30)),  # both 0: unchanged
    ("scale by multiplier", {"multiplier": 1.5}, (60, 45)),
    ("scale longer dimension", {"longer_size": 100}, (100, 75)),
    ("scale shorter dimension", {"shorter_size": 60}, (80, 60)),
    ("scale width", {"width": 20}, (20, 15)),
    ("scale height", {"height": 60}, (80, 60)),
    # int(0.01 * 1024 * 1024) = 10485 pixels: scale sqrt(10485 / 1200) = 2.956; 40 -> 118.2 -> 15 * 8,
    # 30 -> 88.7 -> 11 * 8
    ("scale total pixels", {"megapixels": 0.01, "multiple": 8}, (120, 88)),
    # floor-multiples of 16: 32 x 16; cover them: x0.8 -> 32 x 24, then cut the middle 16 rows
    ("scale to multiple", {"multiple": 16}, (32, 16)),
    ("scale to multiple", {"multiple": 10}, (40, 30)),  # already multiples: unchanged
])
def test_each_resize_type_gives_comfyuis_size(resize_type, settings, size):
    out = resize(IMAGE, resize_type, **settings)
    assert (out.shape[2], out.shape[1]) == size and out.shape[-1] == 3


def test_resized_pixels_are_torchs_interpolate():
    np.testing.assert_allclose(resize(IMAGE, "scale by multiplier", "bilinear", multiplier=1.5),
                               interpolate(IMAGE, 60, 45, "bilinear"), atol=2e-6)
    np.testing.assert_allclose(resize(IMAGE, "scale longer dimension", "area", longer_size=20),
                               interpolate(IMAGE, 20, 15, "area"), atol=2e-6)
    cover = interpolate(IMAGE, 32, 24, "bilinear")[:, 4:20]  # "scale to multiple" 16: cover, then center
    np.testing.assert_allclose(resize(IMAGE, "scale to multiple", multiple=16), cover, atol=2e-6)


def test_center_crop_cuts_the_sides_before_resizing():
    out = resize(IMAGE, "scale dimensions", "bilinear", width=16, height=16, crop="center")
    np.testing.assert_allclose(out, interpolate(IMAGE[:, :, 5:35], 16, 16, "bilinear"), atol=2e-6)


def test_a_mask_stays_a_mask_and_match_size_takes_the_others_size():
    mask = IMAGE[..., 0]
    out = resize(mask, "scale by multiplier", "nearest-exact", multiplier=2.0)
    assert out.shape == (1, 60, 80)
    np.testing.assert_array_equal(out, np.repeat(np.repeat(mask, 2, axis=1), 2, axis=2))
    matched = resize(IMAGE, "match size", "bilinear", match=np.zeros((2, 12, 20)), crop="disabled")
    assert matched.shape == (1, 12, 20, 3)


def test_defaults_apply_for_settings_a_call_leaves_out():
    assert resize(IMAGE, "scale dimensions").shape == (1, 512, 512, 3)  # 512 x 512, center crop


@pytest.mark.parametrize(("resize_type", "settings", "problem"), [
    ("stretch", {}, "resize_type 'stretch' is not one of"),
    ("match size", {}, "needs the input 'resize_type.match'"),
    ("scale by multiplier", {"multiplier": 0.01}, "the target size 0x0 is empty"),
])
def test_resize_errors_say_what_to_change(resize_type, settings, problem):
    with pytest.raises(ValueError) as caught:
        resize(IMAGE, resize_type, **settings)
    assert problem in str(caught.value) and "(fix: " in str(caught.value)


# ----------------------------------------------------------------------------- ResizeAndPadImage


def test_resize_and_pad_fits_inside_and_centers_on_the_padding_color():
    out = ResizeAndPadImage().execute(IMAGE, 64, 64, "white", "area")[0]
    assert out.shape == (1, 64, 64, 3)  # scale min(64/40, 64/30) = 1.6: 64 x 48, 8 rows above and below
    np.testing.assert_allclose(out[:, 8:56], interpolate(IMAGE, 64, 48, "area"), atol=2e-6)
    assert (out[:, :8] == 1.0).all() and (out[:, 56:] == 1.0).all()
    black = ResizeAndPadImage().execute(IMAGE, 41, 64, "black", "nearest-exact")[0]
    # scale min(41/40, 64/30) = 1.025: int(41.0) x int(30.75) = 41 x 30, offset (64 - 30) // 2 = 17
    assert (black[:, :17] == 0).all() and (black[:, 47:] == 0).all() and black[:, 17:47].any()


def test_resize_and_pad_refuses_a_fit_that_leaves_nothing():
    with pytest.raises(ValueError, match="becomes 1x0"):
        ResizeAndPadImage().execute(rand_image(4, 400), 1, 500, "white", "area")


# ----------------------------------------------------------------------------- BatchImagesNode


def test_batch_images_resizes_to_the_first_and_gives_rgb_an_alpha_next_to_rgba():
    first, second, third = rand_image(20, 30, 4, seed=1), rand_image(40, 40, 3, b=2, seed=2), rand_image(20, 30, 4)
    out = BatchImagesNode().execute(**{"images.image0": first, "images.image1": second, "images.image5": third})[0]
    assert out.shape == (4, 20, 30, 4)
    np.testing.assert_array_equal(out[0], first[0])
    rgba = np.concatenate([second, np.ones((2, 40, 40, 1), np.float32)], axis=-1)
    # bilinear with a center crop: 40 x 40 cut to the 3:2 aspect (rows 7..33), then resized
    np.testing.assert_allclose(out[1:3], interpolate(rgba[:, 7:33], 30, 20, "bilinear"), atol=2e-6)
    np.testing.assert_array_equal(out[3], third[0])


def test_batch_images_needs_an_image():
    with pytest.raises(ValueError, match="no image is connected"):
        BatchImagesNode().execute()


# ----------------------------------------------------------------------------- ImageStitch


@pytest.mark.parametrize(("direction", "shape"), [("right", (1, 30, 100, 3)), ("left", (1, 30, 100, 3)),
                                                  ("down", (1, 50, 40, 3)), ("up", (1, 50, 40, 3))])
def test_stitch_puts_image2_on_the_chosen_side_at_image1s_size(direction, shape):
    a, b = rand_image(30, 40, seed=1), rand_image(10, 20, seed=2)  # b is 2:1: 60 x 30 beside, 40 x 20 below
    out = ImageStitch().stitch(a, direction, True, 0, "white", b)[0]
    assert out.shape == shape
    where = {"right": out[:, :, :40], "left": out[:, :, 60:], "down": out[:, :30], "up": out[:, 20:]}[direction]
    np.testing.assert_array_equal(where, a)


def test_stitch_without_matching_pads_the_smaller_image_centered_and_adds_spacing():
    a, b = rand_image(30, 40, seed=1), rand_image(10, 20, seed=2)
    out = ImageStitch().stitch(a, "right", False, 3, "black", b)[0]  # spacing 3 -> 4 (even)
    assert out.shape == (1, 30, 40 + 4 + 20, 3)
    assert (out[:, :, 40:44] == 0).all()
    np.testing.assert_array_equal(out[:, 10:20, 44:], b)  # (30 - 10) // 2 = 10 rows of padding above
    assert (out[:, :10, 44:] == 0).all() and (out[:, 20:, 44:] == 0).all()
    red = ImageStitch().stitch(a, "down", False, 2, "red", rand_image(30, 40, 4))[0]
    assert red.shape == (1, 62, 40, 4) and (red[:, :30, :, 3] == 1).all()  # RGB image1 gets opaque alpha
    np.testing.assert_array_equal(red[0, 30, 0], [1, 0, 0, 1])  # a red, opaque spacing strip


def test_stitch_repeats_the_last_image_of_the_shorter_batch_and_passes_image1_alone():
    a, b = rand_image(8, 8, b=3, seed=1), rand_image(8, 8, b=1, seed=2)
    out = ImageStitch().stitch(a, "right", True, 0, "white", b)[0]
    assert out.shape == (3, 8, 16, 3)
    np.testing.assert_array_equal(out[2, :, 8:], out[0, :, 8:])
    np.testing.assert_array_equal(ImageStitch().stitch(a)[0], a)


# ----------------------------------------------------------------------------- JoinImageWithAlpha / EmptyImage


def test_join_image_with_alpha_uses_one_minus_the_resized_mask():
    image, mask = rand_image(16, 24, b=3), np.random.default_rng(5).random((2, 8, 12), dtype=np.float32)
    out = JoinImageWithAlpha().execute(image, mask)[0]
    assert out.shape == (2, 16, 24, 4)  # min(3 images, 2 masks)
    np.testing.assert_array_equal(out[..., :3], image[:2])
    reference = 1 - interpolate(mask[..., None], 24, 16, "bilinear")[..., 0]
    np.testing.assert_allclose(out[..., 3], reference, atol=2e-6)


def test_empty_image_decodes_the_color_like_comfyui():
    out = EmptyImage().generate(5, 3, 2, 0xFF8000)[0]
    assert out.shape == (2, 3, 5, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out[1, 2, 4], torch.tensor([1.0, 128 / 255, 0.0]).numpy())
    with pytest.raises(ValueError, match="color = 16777216 is not a 0xRRGGBB color"):
        EmptyImage().generate(5, 3, 1, 0x1000000)
