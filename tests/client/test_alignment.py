"""Face alignment: the similarity/warp maths without dlib, then detection on real faces."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from faceobfuscator.client.alignment import (
    CENTRE_LANDMARKS,
    FaceAligner,
    centre_landmarks,
    similarity_transform,
    warp_affine,
)
from faceobfuscator.client.detection import landmarks5_from_68, model_path
from faceobfuscator.client.images import load_image
from faceobfuscator.errors import ConfigError, ImageError, NoFaceError
from faceobfuscator.protocol.config import ProtocolConfig

TEMPLATE = np.array(ProtocolConfig().template)
LFW_SAMPLES = (
    "Aaron_Peirsol/Aaron_Peirsol_0001.jpg",
    "Angelina_Jolie/Angelina_Jolie_0001.jpg",
    "Tony_Blair/Tony_Blair_0001.jpg",
)


def _matrix(angle: float, scale: float, tx: float, ty: float) -> np.ndarray:
    c, s = scale * math.cos(angle), scale * math.sin(angle)
    return np.array([[c, -s, tx], [s, c, ty]])


def _apply(matrix: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ matrix[:, :2].T + matrix[:, 2]


@settings(max_examples=50, deadline=None)
@given(
    angle=st.floats(-math.pi + 0.01, math.pi - 0.01),
    scale=st.floats(0.05, 20.0),
    tx=st.floats(-500, 500),
    ty=st.floats(-500, 500),
    seed=st.integers(0, 2**31 - 1),
)
def test_similarity_transform_recovers_known_transform(angle, scale, tx, ty, seed):
    src = np.random.default_rng(seed).uniform(0, 200, (5, 2))
    truth = _matrix(angle, scale, tx, ty)
    got = similarity_transform(src, _apply(truth, src))
    np.testing.assert_allclose(got, truth, atol=1e-7 * max(1.0, scale, abs(tx), abs(ty)))


def test_similarity_transform_is_least_squares_and_never_reflects():
    mirrored = TEMPLATE * [-1, 1]
    m = similarity_transform(mirrored, TEMPLATE)
    assert np.linalg.det(m[:, :2]) > 0
    # Noise-free points are fitted exactly; a perturbed point leaves a residual but the
    # others stay close (least squares, not interpolation through any two points).
    noisy = TEMPLATE.copy()
    noisy[2] += [3.0, 0.0]
    resid = np.linalg.norm(_apply(similarity_transform(noisy, TEMPLATE), noisy) - TEMPLATE, axis=1)
    assert 0.5 < resid[2] < 3.0 and resid.max() == resid[2]


def test_similarity_transform_rejects_bad_points():
    with pytest.raises(ImageError, match="equal shape"):
        similarity_transform(np.zeros((5, 2)), np.zeros((4, 2)))
    with pytest.raises(ImageError, match="one place"):
        similarity_transform(np.ones((5, 2)), TEMPLATE)


def test_warp_affine_identity_and_integer_shift_are_exact(rng):
    img = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    np.testing.assert_array_equal(warp_affine(img, _matrix(0, 1, 0, 0), (30, 20)), img)
    shifted = warp_affine(img, _matrix(0, 1, 3, -2), (30, 20))
    np.testing.assert_array_equal(shifted[:-2, 3:], img[2:, :-3])
    assert (shifted[:, :3] == 0).all() and (shifted[-2:] == 0).all()


def test_warp_affine_half_pixel_shift_averages_neighbours():
    img = np.zeros((4, 4), np.uint8)
    img[:, 2] = 200
    out = warp_affine(img, _matrix(0, 1, 0.5, 0), 4)
    # output x = 2.5 samples source x = 2.0; output x = 2 samples x = 1.5, halfway to 0
    np.testing.assert_array_equal(out[1], [0, 0, 100, 100])


def test_warp_affine_moves_a_known_point_where_expected():
    yy, xx = np.mgrid[0:200, 0:240]
    src_pt = np.array([150.0, 60.0])
    blob = 255 * np.exp(-((xx - src_pt[0]) ** 2 + (yy - src_pt[1]) ** 2) / (2 * 6.0**2))
    img = np.repeat(blob.astype(np.uint8)[:, :, None], 3, axis=2)
    m = _matrix(0.4, 0.7, -40.0, 10.0)
    out = warp_affine(img, m, 112).astype(np.float64)[:, :, 0]
    oy, ox = np.mgrid[0:112, 0:112]
    centroid = np.array([(out * ox).sum(), (out * oy).sum()]) / out.sum()
    np.testing.assert_allclose(centroid, _apply(m, src_pt[None])[0], atol=0.1)


def test_landmarks5_from_68_picks_eyes_nose_and_mouth():
    pts = np.arange(136, dtype=float).reshape(68, 2)
    five = landmarks5_from_68(pts)
    np.testing.assert_allclose(five[0], pts[36:42].mean(axis=0))
    np.testing.assert_allclose(five[1], pts[42:48].mean(axis=0))
    np.testing.assert_allclose(five[2:], pts[[30, 48, 54]])


def test_model_path_finds_shipped_models():
    assert model_path("shape_predictor_68_face_landmarks.dat").stat().st_size > 10_000_000
    with pytest.raises(ConfigError, match="available"):
        model_path("no_such_model.dat")


@pytest.fixture(scope="module")
def aligner() -> FaceAligner:
    return FaceAligner(ProtocolConfig()).load()


def test_align_real_lfw_faces_puts_eyes_on_template(aligner, datasets_root):
    errors = []
    for rel in LFW_SAMPLES:
        rgb = load_image(datasets_root / "lfw" / rel)
        points = aligner.landmarks5(rgb)
        assert points.shape == (5, 2)
        assert points[0, 0] < points[1, 0] and points[3, 0] < points[4, 0]  # left in image
        assert points[0, 1] < points[2, 1] < points[3, 1]  # eyes above nose above mouth
        crop = aligner.align(rgb)
        assert crop.shape == (112, 112, 3) and crop.dtype == np.uint8
        np.testing.assert_array_equal(crop, aligner.warp(rgb, points))
        mapped = _apply(similarity_transform(points, TEMPLATE), points)
        errors.append(np.linalg.norm(mapped[:2] - TEMPLATE[:2], axis=1))
    # The 5-point fit leaves each face's own shape (and head turn) as residual; swapped or
    # misplaced eyes would be off by tens of pixels.
    assert np.max(errors) < 8.0 and np.mean(errors) < 4.0


def test_largest_face_is_chosen_by_default(aligner, datasets_root):
    small = load_image(datasets_root / "lfw" / LFW_SAMPLES[0])
    big = load_image(datasets_root / "lfw" / LFW_SAMPLES[1])
    half = np.asarray(Image.fromarray(small).resize((88, 88)))
    canvas = np.full((176, 176 + 88, 3), 128, np.uint8)
    canvas[:, :176] = big
    canvas[:88, 176:] = half
    points = aligner.landmarks5(canvas)
    assert points[:, 0].max() < 176  # the full-size face on the left


def test_downscaled_detection_maps_landmarks_back(datasets_root):
    rgb = load_image(datasets_root / "lfw" / LFW_SAMPLES[2])
    big = np.asarray(Image.fromarray(rgb).resize((704, 704), Image.Resampling.BICUBIC))
    points = FaceAligner(ProtocolConfig(), max_side=256).landmarks5(big)
    direct = FaceAligner(ProtocolConfig()).landmarks5(rgb)
    # YuNet regresses the points on the downscaled copy (2.75x smaller than the original):
    # a few pixels of its own noise on a 40 px eye distance, not the 4x of a missed scaling.
    np.testing.assert_allclose(points / 4, direct, atol=5.0)


@pytest.mark.parametrize("kind", ["grey", "noise"])
def test_no_face_raises(aligner, rng, kind):
    if kind == "grey":
        img = np.full((160, 160, 3), 128, np.uint8)
    else:
        img = rng.integers(0, 256, (160, 160, 3), dtype=np.uint8)
    with pytest.raises(NoFaceError):
        aligner.landmarks5(img)
    with pytest.raises(NoFaceError):
        aligner.align_or_centre(img, fallback="none")


def test_align_or_centre_falls_back_to_the_fixed_box(aligner):
    img = np.full((176, 176, 3), 90, np.uint8)
    img[70:90, 60:120] = 200
    crop, outcome = aligner.align_or_centre(img, fallback="centre")
    assert outcome == "centre"
    expected = warp_affine(img, similarity_transform(centre_landmarks(img.shape), TEMPLATE), 112)
    np.testing.assert_array_equal(crop, expected)
    with pytest.raises(ConfigError, match="fallback"):
        aligner.align_or_centre(img, fallback="middle")


def test_align_or_centre_reports_detection(aligner, datasets_root):
    rgb = load_image(datasets_root / "lfw" / LFW_SAMPLES[0])
    crop, outcome = aligner.align_or_centre(rgb, fallback="centre")
    assert outcome == "detected"
    np.testing.assert_array_equal(crop, aligner.align(rgb))


def test_centre_landmarks_table_and_scaling():
    np.testing.assert_array_equal(centre_landmarks((112, 92, 3)), CENTRE_LANDMARKS[(112, 92)])
    lfw = np.array(CENTRE_LANDMARKS[(176, 176)])
    # scaled about the image centre in pixel-centre coordinates: x -> 2x + 0.5
    np.testing.assert_allclose(centre_landmarks((352, 352)), lfw * 2 + 0.5, atol=1e-9)
    # The fixed boxes look like faces: eyes level, mouth below the nose, no rotation.
    for pts in CENTRE_LANDMARKS.values():
        m = similarity_transform(np.array(pts), TEMPLATE)
        assert abs(m[1, 0]) < 0.05 * abs(m[0, 0])


def test_aligner_rejects_bad_arguments(aligner):
    with pytest.raises(ConfigError, match="detector"):
        FaceAligner(ProtocolConfig(), detector="mtcnn")
    with pytest.raises(ConfigError, match="upsample"):
        FaceAligner(ProtocolConfig(), upsample=-1)
    with pytest.raises(ImageError, match="uint8"):
        aligner.landmarks5(np.zeros((100, 100, 3), np.float32))
    with pytest.raises(ImageError, match=r"\(H, W, 3\)"):
        aligner.landmarks5(np.zeros((100, 100), np.uint8))
