"""The one pack codec: faces as JPEG bytes laid end to end in one uint8 array, with an
offsets index (``offsets[i]:offsets[i + 1]`` is face ``i``). Training packs
(:mod:`faceobfuscator.research.training.data`) and privacy packs
(:mod:`faceobfuscator.research.privacy.pack`) store their faces this way; decoding goes
through the one image decoder."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

from faceobfuscator.client.images import load_image
from faceobfuscator.protocol.config import DEFAULT_IMAGE_SIZE
from faceobfuscator.research.data.formats import decode_image

__all__ = ["decode_jpegs", "encode_jpeg", "join_jpegs"]


def encode_jpeg(image: object, *, quality: int) -> np.ndarray:
    """JPEG bytes (uint8 array) of an RGB uint8 ``(H, W, 3)`` array or a PIL image."""
    from PIL import Image

    img = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    buf = io.BytesIO()
    img.convert("RGB").save(buf, format="JPEG", quality=quality)  # type: ignore[attr-defined]
    return np.frombuffer(buf.getvalue(), dtype=np.uint8)


def join_jpegs(chunks: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``(data, offsets)``: the chunks end to end and the int64 index of ``len + 1`` bounds."""
    offsets = np.concatenate([[0], np.cumsum([c.size for c in chunks])]).astype(np.int64)
    data = np.concatenate(chunks) if chunks else np.zeros(0, np.uint8)
    return data, offsets


def decode_jpegs(data: np.ndarray, offsets: np.ndarray, *, size: int | None = None) -> np.ndarray:
    """The faces of ``(data, offsets)`` as uint8 ``(N, size, size, 3)``; ``size`` defaults to
    the first face's height (every face must have it)."""
    if size is None:
        size = (
            load_image(data[offsets[0] : offsets[1]].tobytes()).shape[0]
            if len(offsets) > 1
            else DEFAULT_IMAGE_SIZE
        )
    faces = np.empty((len(offsets) - 1, size, size, 3), dtype=np.uint8)
    for i in range(len(faces)):
        faces[i] = decode_image(data[offsets[i] : offsets[i + 1]].tobytes(), size)
    return faces
