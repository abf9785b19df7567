"""The detector comparison and the photo-size benchmark behind the README's table."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from faceobfuscator.research.bench.detectors import _photo, detector_comparison


def test_detector_comparison_counts_a_seeded_sample(datasets_root):
    result = detector_comparison(
        datasets_root, detector="yunet", sets=("lfw", "cfp-profile"), sample=6, seed=3
    )
    again = detector_comparison(datasets_root, detector="yunet", sets=("lfw",), sample=6, seed=3)
    lfw = result["sets"]["lfw"]
    assert lfw["images"] == 6 and lfw["found"] == 6 and lfw["aligned"] == 6
    assert lfw["p50_ms"] > 0 and again["sets"]["lfw"]["found"] == 6
    profile = result["sets"]["cfp-profile"]
    assert profile["images"] == 6 and 0 <= profile["aligned"] <= profile["found"] <= 6


def test_benchmark_photo_has_the_size_asked_for():
    face = np.full((176, 176, 3), 200, np.uint8)
    with Image.open(io.BytesIO(_photo(face, (640, 480)))) as img:
        assert img.size == (640, 480) and img.format == "JPEG"
