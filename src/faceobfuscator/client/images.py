"""The one image decoder: photos on the client, and the encoded images of the research
datasets (``.bin``, RecordIO, packs) through
:func:`faceobfuscator.research.data.formats.decode_image`."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from faceobfuscator.errors import ImageError

__all__ = ["MAX_PIXELS", "load_image"]

#: Largest image :func:`load_image` decodes by default: 64 megapixels (192 MB as RGB);
#: a 24 MP phone photo decodes, a decompression bomb does not.
MAX_PIXELS = 64_000_000


def load_image(source: str | Path | bytes, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode an image file or encoded bytes to RGB uint8 ``(H, W, 3)``.

    Greyscale, palette and alpha images are converted to RGB; EXIF orientation is applied.
    Raises :class:`ImageError` if the source cannot be read or decoded, or if it has more
    than ``max_pixels`` pixels (checked from the header, before decoding).
    """
    from PIL import Image, ImageOps

    if isinstance(source, bytes | bytearray):
        label = f"<{len(source)} bytes>"
        if not source:
            raise ImageError("cannot decode an image from empty bytes")
        stream: Any = io.BytesIO(source)
    elif isinstance(source, str | Path):
        label = str(source)
        path = Path(source)
        if not path.is_file():
            raise ImageError(f"image file {label} does not exist or is not a file")
        stream = path
    else:
        raise ImageError(f"expected a path or encoded bytes, got {type(source).__name__}")
    try:
        with Image.open(stream) as opened:
            width, height = opened.size
            if width * height > max_pixels:
                raise _TooLarge(
                    f"image {label} has {width}x{height} = {width * height / 1e6:.1f} "
                    f"megapixels, more than the limit of {max_pixels / 1e6:g}; "
                    "downscale it (a face needs far fewer pixels)"
                )
            opened.load()
            # in place, and no conversion of what is RGB already: each copy of a 24 MP photo
            # costs 72 MB
            ImageOps.exif_transpose(opened, in_place=True)
            img = opened
            if img.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                wide = np.asarray(img, dtype=np.float64)
                top = 65535.0 if wide.max(initial=0) > 255 else 255.0
                grey = np.clip(np.rint(wide * (255.0 / top)), 0, 255).astype(np.uint8)
                return np.repeat(grey[:, :, None], 3, axis=2)
            rgb = np.asarray(img if img.mode == "RGB" else img.convert("RGB"), dtype=np.uint8)
    except _TooLarge as exc:
        raise ImageError(str(exc)) from None
    except Exception as exc:  # PIL raises many unrelated types for bad data
        raise ImageError(
            f"cannot decode image {label}: {type(exc).__name__}: {exc}; "
            "expected a readable JPEG, PNG, PGM or other Pillow-supported file"
        ) from None
    if rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ImageError(f"image {label} is empty ({rgb.shape[1]}x{rgb.shape[0]})")
    return np.ascontiguousarray(rgb)


class _TooLarge(Exception):
    """Carries the pixel-limit refusal past the catch-all for decoder errors."""
