"""Face detection and 5-point alignment to the protocol's template.

Detection uses dlib's HOG frontal detector (or its MMOD CNN detector) and 68-point shape
predictor (models from the ``face-recognition-models`` package); the warp is plain numpy,
so the maths (:func:`similarity_transform`, :func:`warp_affine`) is testable without dlib.

Coordinates are (x, y) in pixel-index units (pixel centres at integers), the convention of
dlib and of the ArcFace template. Template point 0 is the eye with the smaller x in the
image (the subject's right eye).
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from faceobfuscator.errors import ConfigError, ImageError, NoFaceError
from faceobfuscator.protocol.config import ProtocolConfig

__all__ = [
    "CENTRE_LANDMARKS",
    "FaceAligner",
    "centre_landmarks",
    "landmarks5_from_68",
    "model_path",
    "similarity_transform",
    "warp_affine",
]

#: Mean detected 5-point landmarks (x, y) of the pre-centred datasets, keyed by image
#: (height, width): LFW deep-funneled 176x176 crops and AT&T 92x112 faces. They define the
#: fixed "centre" crop used when detection fails on such images. Made by
#: ``faceobfuscator.research.data.datasets.mean_landmarks`` over the detected entries of the manifests of
#: ``faceobf data prepare lfw|att`` (13,179 of 13,233 LFW and 395 of 400 AT&T images);
#: ``tests/test_datasets.py`` reproduces them (LFW under the ``slow`` marker).
CENTRE_LANDMARKS: dict[tuple[int, int], tuple[tuple[float, float], ...]] = {
    (176, 176): (
        (72.44, 81.57),
        (113.27, 80.72),
        (93.28, 103.50),
        (75.39, 126.51),
        (112.40, 125.84),
    ),
    (112, 92): (
        (27.92, 52.16),
        (61.43, 52.63),
        (44.49, 68.49),
        (29.31, 85.11),
        (59.01, 85.47),
    ),
}
_FALLBACKS = ("centre", "none")
_DETECTORS = ("hog", "cnn")
_SELECTIONS = ("largest", "central")


def model_path(name: str) -> Path:
    """Path of a model file shipped by ``face-recognition-models``, e.g.
    ``"shape_predictor_68_face_landmarks.dat"``."""
    # The package's __init__ imports pkg_resources, gone from current setuptools, so the
    # folder is located without importing it.
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(
            "the face-recognition-models package is not installed; "
            "install it with `pip install face-recognition-models==0.3.0`"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    path = folder / name
    if not path.is_file():
        known = sorted(p.name for p in folder.glob("*.dat")) if folder.is_dir() else []
        raise ConfigError(f"model file {name!r} not found in {folder}; available: {known}")
    return path


def similarity_transform(src_pts: np.ndarray, dst_pts: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; no reflection) that
    maps ``src_pts`` onto ``dst_pts`` (Umeyama 1991).

    Args:
        src_pts, dst_pts: ``(N, 2)`` points (x, y), N >= 2.

    Returns:
        ``(2, 3)`` float64 matrix ``M`` with ``dst ~= M @ [x, y, 1]``.
    """
    src = np.asarray(src_pts, dtype=np.float64)
    dst = np.asarray(dst_pts, dtype=np.float64)
    if src.ndim != 2 or src.shape[1] != 2 or src.shape != dst.shape or src.shape[0] < 2:
        raise ImageError(
            f"expected two (N, 2) point arrays of equal shape with N >= 2, "
            f"got {src.shape} and {dst.shape}"
        )
    if not (np.isfinite(src).all() and np.isfinite(dst).all()):
        raise ImageError("landmark points must be finite")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = (src_c**2).sum() / len(src)
    if src_var <= 1e-12:
        raise ImageError("source points are all at one place; cannot estimate a transform")
    cov = dst_c.T @ src_c / len(src)
    u, sigma, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1.0
    rot = u @ np.diag(d) @ vt
    scale = float((sigma * d).sum() / src_var)
    matrix = np.empty((2, 3))
    matrix[:, :2] = scale * rot
    matrix[:, 2] = dst_mean - scale * rot @ src_mean
    return matrix


def warp_affine(rgb: np.ndarray, matrix: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Warp an image by the affine ``matrix`` (source -> output coordinates) with bilinear
    interpolation; pixels that map outside the source are black.

    Args:
        rgb: uint8 ``(H, W)`` or ``(H, W, C)``.
        matrix: ``(2, 3)`` affine map from source (x, y) to output (x, y).
        size: output side, or ``(width, height)``.

    Returns:
        uint8 ``(height, width[, C])``.
    """
    img = np.asarray(rgb)
    if img.dtype != np.uint8 or img.ndim not in (2, 3) or 0 in img.shape:
        raise ImageError(f"expected a uint8 (H, W) or (H, W, C) image, got {img.dtype} {img.shape}")
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (2, 3) or not np.isfinite(m).all():
        raise ImageError(f"expected a finite (2, 3) affine matrix, got shape {m.shape}")
    out_w, out_h = (size, size) if isinstance(size, int) else size
    if out_w < 1 or out_h < 1:
        raise ImageError(f"output size must be positive, got {size}")
    try:
        inv = np.linalg.inv(m[:, :2])
    except np.linalg.LinAlgError:
        raise ImageError("affine matrix is singular") from None
    ys, xs = np.mgrid[0:out_h, 0:out_w].astype(np.float64)
    out_xy = np.stack([xs - m[0, 2], ys - m[1, 2]], axis=-1)
    src_xy = out_xy @ inv.T
    h, w = img.shape[:2]
    # A one-pixel zero border makes samples that straddle the edge fade to black.
    pad = [(1, 1), (1, 1)] + [(0, 0)] * (img.ndim - 2)
    padded = np.pad(img, pad).astype(np.float64)
    px, py = src_xy[..., 0] + 1.0, src_xy[..., 1] + 1.0
    x0, y0 = np.floor(px), np.floor(py)
    inside = (x0 >= 0) & (x0 <= w) & (y0 >= 0) & (y0 <= h)
    x0i = np.clip(x0, 0, w).astype(np.intp)
    y0i = np.clip(y0, 0, h).astype(np.intp)
    wx, wy = px - x0, py - y0
    if img.ndim == 3:
        wx, wy, inside = wx[..., None], wy[..., None], inside[..., None]
    top = padded[y0i, x0i] * (1 - wx) + padded[y0i, x0i + 1] * wx
    bottom = padded[y0i + 1, x0i] * (1 - wx) + padded[y0i + 1, x0i + 1] * wx
    out = np.where(inside, top * (1 - wy) + bottom * wy, 0.0)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def landmarks5_from_68(points68: np.ndarray) -> np.ndarray:
    """Reduce dlib's 68 landmarks ``(68, 2)`` to the template's five ``(5, 2)``: eye centres
    (mean of points 36-41 and 42-47), nose tip (30), mouth corners (48, 54)."""
    p = np.asarray(points68, dtype=np.float64)
    if p.shape != (68, 2):
        raise ImageError(f"expected (68, 2) landmarks, got {p.shape}")
    return np.stack([p[36:42].mean(axis=0), p[42:48].mean(axis=0), p[30], p[48], p[54]])


def centre_landmarks(shape: tuple[int, ...]) -> np.ndarray:
    """The fixed 5 points of the "centre" fallback for an image of ``shape`` ``(H, W, ...)``.

    Exact for the sizes in :data:`CENTRE_LANDMARKS`; any other size gets the LFW points
    scaled by ``min(H, W) / 176`` about the image centre (a face filling the same share of
    the shorter side).
    """
    h, w = int(shape[0]), int(shape[1])
    if (h, w) in CENTRE_LANDMARKS:
        return np.array(CENTRE_LANDMARKS[(h, w)], dtype=np.float64)
    ref = np.array(CENTRE_LANDMARKS[(176, 176)], dtype=np.float64)
    centre_ref = np.array([175 / 2, 175 / 2])
    return (ref - centre_ref) * (min(h, w) / 176) + np.array([(w - 1) / 2, (h - 1) / 2])


@functools.lru_cache(maxsize=2)
def _detector(kind: str) -> Any:
    """dlib's face detector, loaded once per process and kind."""
    import dlib

    if kind == "cnn":
        path = model_path("mmod_human_face_detector.dat")
        return dlib.cnn_face_detection_model_v1(str(path))
    return dlib.get_frontal_face_detector()


@functools.lru_cache(maxsize=1)
def _predictor() -> Any:
    """dlib's 68-point shape predictor, loaded once per process."""
    import dlib

    return dlib.shape_predictor(str(model_path("shape_predictor_68_face_landmarks.dat")))


def _check_rgb(rgb: np.ndarray) -> np.ndarray:
    if not isinstance(rgb, np.ndarray):
        raise ImageError(f"expected a numpy array, got {type(rgb).__name__}")
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ImageError(
            f"expected an RGB uint8 image (H, W, 3), got {rgb.dtype} {rgb.shape}; "
            "use load_image() to decode files"
        )
    if min(rgb.shape[:2]) < 8:
        raise ImageError(f"image {rgb.shape[1]}x{rgb.shape[0]} is too small to hold a face")
    return np.ascontiguousarray(rgb)


class FaceAligner:
    """Detect a face, find its five landmarks and warp it onto ``config.template``.

    Args:
        config: protocol configuration (``template``, ``image_size``).
        upsample: times dlib upsamples the (downscaled) image before detection; each step
            halves the smallest detectable face (80 px at 0) and roughly quadruples the time.
        max_side: images whose longer side exceeds this are downscaled for detection only;
            landmarks are predicted on the full image.
        detector: ``"hog"`` (dlib's HOG frontal detector, about 15 ms on a 176 px image) or
            ``"cnn"`` (dlib's MMOD CNN, which also finds profile faces; about 300 ms at
            400 px and ``upsample=0`` on one CPU core).
    """

    def __init__(
        self,
        config: ProtocolConfig,
        *,
        upsample: int = 1,
        max_side: int = 640,
        detector: str = "hog",
    ) -> None:
        if detector not in _DETECTORS:
            raise ConfigError(f"detector={detector!r}; expected one of {list(_DETECTORS)}")
        if not isinstance(upsample, int) or upsample < 0:
            raise ConfigError(f"upsample={upsample!r} must be an integer >= 0")
        if not isinstance(max_side, int) or max_side < 32:
            raise ConfigError(f"max_side={max_side!r} must be an integer >= 32")
        self.config = config
        self.upsample = upsample
        self.max_side = max_side
        self.detector = detector
        self._template = np.asarray(config.template, dtype=np.float64)

    def load(self) -> FaceAligner:
        """Load the dlib models now rather than on first use (once per process)."""
        _detector(self.detector)
        _predictor()
        return self

    def landmarks5(self, rgb: np.ndarray, *, select: str = "largest") -> np.ndarray:
        """Five landmarks ``(5, 2)`` float64 (x, y) of one face in an RGB uint8 image.

        Args:
            select: which face when there are several: ``"largest"`` (box area) or
                ``"central"`` (box centre nearest the image centre, for pre-centred crops).

        Raises:
            NoFaceError: no face was detected.
        """
        import dlib

        if select not in _SELECTIONS:
            raise ConfigError(f"select={select!r}; expected one of {list(_SELECTIONS)}")
        img = _check_rgb(rgb)
        h, w = img.shape[:2]
        factor = min(1.0, self.max_side / max(h, w))
        small = img if factor == 1.0 else _resize(img, factor)
        rects = list(_detector(self.detector)(small, self.upsample))
        if self.detector == "cnn":
            rects = [d.rect for d in rects]
        if not rects:
            raise NoFaceError(f"no face detected in a {w}x{h} image")
        boxes = np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects], float)
        boxes /= factor
        if select == "largest":
            pick = int(np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])))
        else:
            centres = (boxes[:, :2] + boxes[:, 2:]) / 2
            pick = int(np.argmin(((centres - [(w - 1) / 2, (h - 1) / 2]) ** 2).sum(axis=1)))
        left, top, right, bottom = (int(round(v)) for v in boxes[pick])
        shape = _predictor()(img, dlib.rectangle(left, top, right, bottom))
        points = np.array([[shape.part(i).x, shape.part(i).y] for i in range(68)], float)
        return landmarks5_from_68(points)

    def warp(self, rgb: np.ndarray, points: np.ndarray) -> np.ndarray:
        """Warp ``rgb`` so that the five ``points`` land on the template:
        ``(S, S, 3)`` uint8."""
        matrix = similarity_transform(points, self._template)
        return warp_affine(_check_rgb(rgb), matrix, self.config.image_size)

    def align(self, rgb: np.ndarray, *, select: str = "largest") -> np.ndarray:
        """Detect, landmark and warp one face: ``(S, S, 3)`` uint8, S = ``image_size``.

        Raises:
            NoFaceError: no face was detected.
        """
        return self.warp(rgb, self.landmarks5(rgb, select=select))

    def locate(
        self, rgb: np.ndarray, *, fallback: str, select: str = "largest"
    ) -> tuple[np.ndarray, str]:
        """The five points to warp and the outcome: the detected landmarks and
        ``"detected"``, or, with ``fallback="centre"`` and no face found, the fixed points
        of :func:`centre_landmarks` and ``"centre"``. ``fallback="none"`` raises
        :class:`NoFaceError` instead."""
        if fallback not in _FALLBACKS:
            raise ConfigError(f"fallback={fallback!r}; expected one of {list(_FALLBACKS)}")
        try:
            return self.landmarks5(rgb, select=select), "detected"
        except NoFaceError:
            if fallback == "none":
                raise
        return centre_landmarks(rgb.shape), "centre"

    def align_or_centre(
        self, rgb: np.ndarray, *, fallback: str, select: str = "largest"
    ) -> tuple[np.ndarray, str]:
        """Align a face, falling back to a fixed crop when none is detected.

        Args:
            fallback: ``"centre"``: for pre-centred datasets (LFW deep-funneled crops,
                AT&T), warp the fixed points of :func:`centre_landmarks` (the dataset's
                mean detected landmarks) instead; ``"none"``: raise :class:`NoFaceError`.

        Returns:
            The ``(S, S, 3)`` uint8 crop and the outcome, ``"detected"`` or ``"centre"``.
        """
        points, outcome = self.locate(rgb, fallback=fallback, select=select)
        return self.warp(rgb, points), outcome


def _resize(rgb: np.ndarray, factor: float) -> np.ndarray:
    from PIL import Image

    h, w = rgb.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR))
