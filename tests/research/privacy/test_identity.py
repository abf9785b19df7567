"""The independent recognizer in its own geometry: our chip cut agrees with dlib's, the
fixed box is what dlib's geometry gives, originals match their other photos, and the
attacker's average face matches almost nobody. Needs the LFW images (skips, saying so)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from faceobfuscator.client.alignment import FaceAligner, warp_affine
from faceobfuscator.client.detection import model_path
from faceobfuscator.client.images import load_image
from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.research.privacy.identity import (
    CHIP_FROM_ARCFACE_112,
    CHIP_FROM_HOG_112,
    CHIP_FROM_YUNET_112,
    DlibRecognizer,
    _chip_geometry,
    cosine,
    measure_chip_matrix,
)

PEOPLE = (
    "Colin_Powell",
    "Tony_Blair",
    "Donald_Rumsfeld",
    "Gerhard_Schroeder",
    "Ariel_Sharon",
    "Hugo_Chavez",
    "Junichiro_Koizumi",
    "Jean_Chretien",
    "John_Ashcroft",
    "Serena_Williams",
)


def _photo(root: Path, person: str, i: int) -> np.ndarray:
    return load_image(root / "lfw" / person / f"{person}_{i:04d}.jpg")


def test_our_chip_cut_is_dlibs(datasets_root: Path) -> None:
    import dlib

    rgb = _photo(datasets_root, "Tony_Blair", 1)
    rect = dlib.get_frontal_face_detector()(rgb, 1)[0]
    shape = dlib.shape_predictor(str(model_path("shape_predictor_68_face_landmarks.dat")))(
        rgb, rect
    )
    ours = warp_affine(rgb, _chip_geometry(dlib.get_face_chip_details(shape, 150, 0.25)), 150)
    theirs = np.asarray(dlib.get_face_chip(rgb, shape, 150, 0.25))
    assert np.abs(ours.astype(int) - theirs.astype(int)).mean() < 2.0


@pytest.mark.parametrize(
    ("detector", "expected"), [("hog", CHIP_FROM_HOG_112), ("yunet", CHIP_FROM_YUNET_112)]
)
def test_fixed_box_is_dlibs_geometry_on_average(
    datasets_root: Path, detector: str, expected: np.ndarray
) -> None:
    aligner = None if detector == "hog" else FaceAligner(ProtocolConfig(), detector=detector)
    m, n = measure_chip_matrix((_photo(datasets_root, p, 1) for p in PEOPLE), aligner=aligner)
    assert n >= 8
    # scale and rotation within a few percent, translation within the spread of faces (4 px)
    np.testing.assert_allclose(m[:, :2], expected[:, :2], atol=0.06)
    np.testing.assert_allclose(m[:, 2], expected[:, 2], atol=6.0)


def test_the_default_chip_map_is_the_default_aligners() -> None:
    from faceobfuscator.client.alignment import FaceAligner as Aligner

    assert Aligner(ProtocolConfig()).detector == "yunet"
    np.testing.assert_array_equal(CHIP_FROM_ARCFACE_112, CHIP_FROM_YUNET_112)


@pytest.fixture(scope="module")
def aligned_pairs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two photos each of :data:`PEOPLE`, and the average of 40 other people's photos (an
    attacker's average face)."""
    from faceobfuscator.research.data.datasets import list_images
    from tests.research.privacy.synthetic import DATASETS

    if not (DATASETS / "lfw").is_dir():
        pytest.skip(f"needs the LFW images at {DATASETS} (shared datasets folder not present)")
    # the client's default aligner (YuNet), whose chip map is CHIP_FROM_ARCFACE_112
    aligner = FaceAligner(ProtocolConfig())
    first = np.stack([aligner.align(_photo(DATASETS, p, 1)) for p in PEOPLE])
    second = np.stack([aligner.align(_photo(DATASETS, p, 2)) for p in PEOPLE])
    images = [(i, rel) for i, rel in list_images("lfw", DATASETS) if i not in PEOPLE]
    pick = np.random.default_rng(0).choice(len(images), 40, replace=False)
    others = [
        aligner.align_or_centre(load_image(DATASETS / "lfw" / images[k][1]), fallback="centre")[0]
        for k in pick
    ]
    average = np.round(np.stack(others).astype(float).mean(0)).astype(np.uint8)
    return first, second, average


def test_originals_match_their_other_photos_and_the_average_face_nobody(
    aligned_pairs: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    first, second, average = aligned_pairs
    rec = DlibRecognizer(ProtocolConfig())
    a, b = rec.embed(first), rec.embed(second)
    avg = np.repeat(rec.embed(average[None]), len(b), axis=0)
    assert rec.matches(a, b).mean() >= 0.9  # ceiling
    assert rec.matches(np.roll(a, 1, axis=0), b).mean() <= 0.1  # impostors
    # floor: at dlib's loose 0.6 the average of 40 aligned faces passes for a few people
    # (2 of these 10 with YuNet crops, 1 with dlib-aligned ones), never for most
    assert rec.matches(avg, b).mean() <= 0.2
    assert cosine(a, b).mean() > cosine(avg, b).mean()


def test_float_and_uint8_inputs_give_the_same_descriptor(
    aligned_pairs: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    import torch

    rec = DlibRecognizer(ProtocolConfig())
    faces = aligned_pairs[0][:2]
    as_float = torch.from_numpy(faces).permute(0, 3, 1, 2).float() / 255
    np.testing.assert_allclose(rec.embed(faces), rec.embed(as_float), atol=1e-6)
