"""The one image decoder: greyscale, EXIF orientation, corrupt and missing inputs."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceobfuscator.client.images import load_image
from faceobfuscator.errors import ImageError


def test_load_image_converts_greyscale_pgm_to_rgb(datasets_root):
    rgb = load_image(datasets_root / "att_faces" / "s1" / "1.pgm")
    assert rgb.shape == (112, 92, 3) and rgb.dtype == np.uint8
    assert (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
    assert rgb.std() > 10  # a real picture, not a constant


def test_load_image_applies_exif_orientation():
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif)
    assert load_image(buf.getvalue()).shape == (40, 20, 3)


@pytest.mark.parametrize("data", [b"", b"not an image at all", b"\xff\xd8\xff\xe0" + b"\0" * 50])
def test_load_image_rejects_corrupt_bytes(data):
    with pytest.raises(ImageError, match="decode"):
        load_image(data)


def test_load_image_rejects_missing_file(tmp_path: Path):
    with pytest.raises(ImageError, match="does not exist"):
        load_image(tmp_path / "nope.jpg")
