"""The one preview encoder (``nodes.images``) shared by the in-process and worker executors."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from vortex_jupyter.nodes.images import encode_image, to_uint8


def _decode(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def test_a_float_batch_becomes_a_png_of_its_first_image():
    batch = np.zeros((2, 8, 6, 3), dtype=np.float32)
    batch[0, :, :, 0] = 1.0
    batch[1] = 0.5  # not shown
    mime, data = encode_image(batch)
    img = _decode(data)
    assert mime == "image/png" and data.startswith(b"\x89PNG")
    assert img.size == (6, 8) and img.getpixel((0, 0)) == (255, 0, 0)


def test_step_previews_are_jpeg_and_finals_png():
    image = np.full((16, 16, 3), 0.5, dtype=np.float32)
    mime, data = encode_image(image, final=False)
    assert mime == "image/jpeg" and data[:2] == b"\xff\xd8" and _decode(data).size == (16, 16)
    rgba = Image.new("RGBA", (4, 4), (1, 2, 3, 4))  # JPEG has no alpha: converted, not an error
    assert encode_image(rgba, final=False)[0] == "image/jpeg"
    assert encode_image(rgba, final=True)[0] == "image/png"


def test_uint8_is_kept_single_channels_squeezed_and_nan_clipped():
    assert _decode(encode_image(np.full((4, 4), 7, dtype=np.uint8))[1]).getpixel((1, 1)) == 7
    one = to_uint8(np.full((1, 3, 5, 1), 2.0, dtype=np.float64))
    assert one.shape == (3, 5) and one.dtype == np.uint8 and (one == 255).all()
    assert to_uint8(np.array([[np.nan, -1.0, 0.5]]))[0].tolist() == [0, 0, 128]


def test_encoded_bytes_pass_through_with_the_mime_of_their_magic():
    png = encode_image(np.zeros((2, 2)))[1]
    assert encode_image(png) == ("image/png", png)
    assert encode_image(bytearray(b"\xff\xd8jpegdata")) == ("image/jpeg", b"\xff\xd8jpegdata")


def test_torch_tensors_that_need_grad_or_are_bfloat16_are_encoded():
    torch = pytest.importorskip("torch")
    t = torch.ones((1, 4, 4, 3), requires_grad=True) * 1.0  # np.asarray would refuse it
    assert to_uint8(t).shape == (4, 4, 3) and int(to_uint8(t)[0, 0, 0]) == 255
    assert to_uint8(torch.zeros((4, 4), dtype=torch.bfloat16)).max() == 0


def test_a_shapeless_value_is_a_clear_error():
    with pytest.raises(ValueError, match="HxW, HxWxC or BxHxWxC, not shape \\(3,\\)"):
        to_uint8(np.zeros(3))


def test_both_executors_use_this_encoder_and_importing_it_loads_neither_torch_nor_pil():
    from vortex_jupyter.engine import inprocess
    from vortex_jupyter.workers import runner

    assert runner.encode_image is encode_image and inprocess.encode_image is encode_image
    code = "import sys, vortex_jupyter.nodes.images; print('torch' in sys.modules, 'PIL' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
