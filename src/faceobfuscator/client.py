"""The client's local pipeline under the name the SDK uses: see :mod:`faceobfuscator.protect`."""

from __future__ import annotations

from .protect import Aligner, ImageSource
from .protect import protect_photo as protect_image

__all__ = ["Aligner", "ImageSource", "protect_image"]
