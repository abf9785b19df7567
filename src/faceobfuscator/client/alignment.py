"""Face selection, a plausibility gate and 5-point alignment to the protocol's template.

Faces come from a detector chosen by name (:mod:`faceobfuscator.client.detection`; YuNet by
default, dlib's ``"hog"`` and ``"cnn"`` on request); one is selected
(:func:`select_face`), checked by the :class:`PlausibilityGate` and warped onto
``config.template`` by the least-squares similarity :func:`similarity_transform` and
OpenCV's bilinear ``warpAffine`` on the uint8 image, which reads only the pixels the
112x112 output needs (memory independent of the photo's size).

Coordinates are (x, y) in pixel-index units (pixel centres at integers), the convention of
OpenCV, dlib and the ArcFace template. Template point 0 is the eye with the smaller x in the
image (the subject's right eye).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from faceobfuscator.client.detection import DETECTORS, Face, make_detector
from faceobfuscator.errors import (
    ConfigError,
    FaceQualityError,
    ImageError,
    MultipleFacesError,
    NoFaceError,
)
from faceobfuscator.protocol.config import ProtocolConfig

__all__ = [
    "CENTRE_LANDMARKS",
    "SELECTIONS",
    "FaceAligner",
    "PlausibilityGate",
    "centre_landmarks",
    "select_face",
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
#: Which face of several: the largest box; the box centre nearest the image centre (for
#: pre-centred crops); or the largest, refusing a photo where another face is of similar
#: size (:data:`SIMILAR_SIDE` of its side or more), for enrolment.
SELECTIONS = ("largest", "central", "single")
SIMILAR_SIDE = 0.6


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
    interpolation (OpenCV ``INTER_LINEAR``); pixels that map outside the source are black.

    Args:
        rgb: uint8 ``(H, W)`` or ``(H, W, C)``, C <= 4.
        matrix: ``(2, 3)`` affine map from source (x, y) to output (x, y).
        size: output side, or ``(width, height)``.

    Returns:
        uint8 ``(height, width[, C])``.
    """
    import cv2

    img = np.asarray(rgb)
    if img.dtype != np.uint8 or img.ndim not in (2, 3) or 0 in img.shape:
        raise ImageError(f"expected a uint8 (H, W) or (H, W, C) image, got {img.dtype} {img.shape}")
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (2, 3) or not np.isfinite(m).all():
        raise ImageError(f"expected a finite (2, 3) affine matrix, got shape {m.shape}")
    if abs(np.linalg.det(m[:, :2])) < 1e-12:
        raise ImageError("affine matrix is singular")
    out_w, out_h = (size, size) if isinstance(size, int) else size
    if out_w < 1 or out_h < 1:
        raise ImageError(f"output size must be positive, got {size}")
    return cv2.warpAffine(
        np.ascontiguousarray(img),
        m,
        (out_w, out_h),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


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


@dataclass(frozen=True)
class PlausibilityGate:
    """Refuses a detected face whose landmarks cannot give a faithful crop.

    Sizes are relative to the face's own scale, the distance from the eyes' midpoint to the
    mouth corners' midpoint (``em``; about 41 px on the 112 px template).

    Attributes:
        margin: every landmark lies at least ``margin * em`` inside the frame (a chin or
            mouth cut off by the frame puts the mouth corners on or past the edge).
        min_face: smallest ``em`` in pixels; smaller faces are mostly upsampled blur.
        max_residual: largest distance, in template pixels, between a landmark mapped by
            the fitted similarity and its template point; the five points of a real face
            stay within about 15 (frontal) or 27 (full profile). Besides, the eyes and mouth
            must not be mirrored (the eye to eye vector turns clockwise to the eyes to mouth
            vector in image coordinates, whatever the rotation).
        max_width: the eye distance and the mouth width are at most this times ``em``
            (real faces: up to 1.5).
        nose_band: the nose projects between the eyes and the mouth, at this share of the
            way from the eyes' midpoint to the mouth's (real faces: 0.33 to 0.77).
        min_score: lowest detector score accepted, by detector name (YuNet's calibrated
            0..1 score; dlib's scores are margins the detector already thresholds at 0).

    On YuNet's detections it refuses none of LFW's 13,233 and CFP's 5,000 frontal images
    and 44 of its 2,000 profiles (numbers and command in the README).
    """

    margin: float = 0.02
    min_face: float = 10.0
    max_residual: float = 30.0
    max_width: float = 2.0
    nose_band: tuple[float, float] = (0.1, 0.95)
    min_score: tuple[tuple[str, float], ...] = (("yunet", 0.6), ("hog", 0.0), ("cnn", 0.0))

    def check(
        self,
        points: np.ndarray,
        shape: tuple[int, ...],
        *,
        score: float,
        detector: str,
        template: np.ndarray,
    ) -> None:
        """Raise :class:`FaceQualityError`, saying which test failed, unless the five
        ``points`` (x, y) of a face scored ``score`` by ``detector`` are plausible in an
        image of ``shape`` ``(H, W, ...)``; ``template`` is the protocol's ``(5, 2)``
        template (112 px)."""
        p = np.asarray(points, dtype=np.float64)
        h, w = int(shape[0]), int(shape[1])
        floor = dict(self.min_score).get(detector, 0.0)
        if not score >= floor:
            raise FaceQualityError(
                f"the face's detection score {score:.2f} is below {floor} ({detector}); "
                "use a sharper, better lit photo of the face"
            )
        em = float(np.hypot(*(p[3:5].mean(axis=0) - p[0:2].mean(axis=0))))
        if not em >= self.min_face:
            raise FaceQualityError(
                f"the face is too small ({em:.1f} px from eyes to mouth, at least "
                f"{self.min_face:g} needed); use a closer or larger photo"
            )
        inset = min(p[:, 0].min(), p[:, 1].min(), w - 1 - p[:, 0].max(), h - 1 - p[:, 1].max())
        if inset < self.margin * em:
            where = (
                f"{-inset:.0f} px outside the frame"
                if inset < 0
                else f"{inset:.0f} px from the edge, closer than {self.margin * em:.1f}"
            )
            raise FaceQualityError(
                f"the face is cut off by the edge of the photo ({w}x{h}; a landmark lies "
                f"{where}); use a photo that shows the whole face"
            )
        eyes = p[1] - p[0]
        down = p[3:5].mean(axis=0) - p[0:2].mean(axis=0)
        if eyes[0] * down[1] - eyes[1] * down[0] <= 0:
            raise FaceQualityError(
                "the face's landmarks are mirrored (the eyes or the mouth corners in the "
                "wrong order for an upright or rotated face); use a photo of one "
                "unobstructed face"
            )
        widest = max(float(np.hypot(*eyes)), float(np.hypot(*(p[4] - p[3])))) / em
        nose = float((p[2] - p[0:2].mean(axis=0)) @ down) / em**2
        if widest > self.max_width or not self.nose_band[0] <= nose <= self.nose_band[1]:
            raise FaceQualityError(
                f"the face's landmarks do not have a face's geometry (eyes or mouth "
                f"{widest:.1f} times as wide as the eyes-to-mouth distance, at most "
                f"{self.max_width:g}; nose at {nose:.2f} of the way from eyes to mouth, "
                f"{self.nose_band[0]:g}..{self.nose_band[1]:g} expected); "
                "use a photo of one upright, unobstructed face"
            )
        matrix = similarity_transform(p, template)
        mapped = p @ matrix[:, :2].T + matrix[:, 2]
        residual = float(np.sqrt(((mapped - template) ** 2).sum(axis=1)).max())
        if residual > self.max_residual:
            raise FaceQualityError(
                f"the face's landmarks do not have a face's geometry (off by {residual:.0f} "
                f"template pixels, at most {self.max_residual:g} accepted); "
                "use a photo of one upright, unobstructed face"
            )


def select_face(faces: list[Face], shape: tuple[int, ...], *, select: str) -> Face:
    """The face of ``faces`` chosen by ``select`` (one of :data:`SELECTIONS`) in an image of
    ``shape`` ``(H, W, ...)``.

    Raises:
        NoFaceError: ``faces`` is empty.
        MultipleFacesError: ``select="single"`` and another face's box side is at least
            :data:`SIMILAR_SIDE` of the largest's.
    """
    if select not in SELECTIONS:
        raise ConfigError(f"select={select!r}; expected one of {list(SELECTIONS)}")
    h, w = int(shape[0]), int(shape[1])
    if not faces:
        raise NoFaceError(f"no face detected in a {w}x{h} image")
    if select == "central":
        centres = np.array([f.centre for f in faces])
        return faces[int(np.argmin(((centres - [(w - 1) / 2, (h - 1) / 2]) ** 2).sum(axis=1)))]
    areas = np.array([f.area for f in faces])
    pick = int(np.argmax(areas))
    if select == "single":
        similar = int((np.sqrt(areas / areas[pick]) >= SIMILAR_SIDE).sum())
        if similar > 1:
            raise MultipleFacesError(
                f"found {similar} faces of similar size ({len(faces)} faces in all) in a "
                f"{w}x{h} photo; use a photo of one person, or choose one with "
                "select='largest' or 'central'"
            )
    return faces[pick]


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
    """Detect faces, select one, check it and warp it onto ``config.template``.

    Args:
        config: protocol configuration (``template``, ``image_size``).
        detector: ``"yunet"`` (default; about 5 ms on a 640x480 photo on one core, finds
            tilted, small and profile faces), ``"hog"`` (dlib's HOG frontal detector) or
            ``"cnn"`` (dlib's MMOD CNN; about 300 ms at 400 px on one core).
        max_side: images whose longer side exceeds this are downscaled for detection only.
        upsample: dlib only: times the (downscaled) image is upsampled before detection.
        gate: the plausibility check of the selected face; ``None`` accepts every detection.
    """

    def __init__(
        self,
        config: ProtocolConfig,
        *,
        detector: str = "yunet",
        max_side: int = 640,
        upsample: int = 1,
        gate: PlausibilityGate | None = PlausibilityGate(),  # noqa: B008 (frozen)
    ) -> None:
        if detector not in DETECTORS:
            raise ConfigError(f"detector={detector!r}; expected one of {list(DETECTORS)}")
        if not isinstance(upsample, int) or upsample < 0:
            raise ConfigError(f"upsample={upsample!r} must be an integer >= 0")
        if not isinstance(max_side, int) or max_side < 32:
            raise ConfigError(f"max_side={max_side!r} must be an integer >= 32")
        self.config = config
        self.detector = detector
        self.max_side = max_side
        self.upsample = upsample
        self.gate = gate
        self._detector: Any = make_detector(detector, max_side=max_side, upsample=upsample)
        # The template goes through float32 as in the recipe that made the training crops
        # (cache/yunet): the float64 decimals move ~60% of crops by one grey level.
        self._template = np.asarray(config.template, dtype=np.float32).astype(np.float64)

    def load(self) -> FaceAligner:
        """Load the detector's models now rather than on first use."""
        self._detector.load()
        return self

    def faces(self, rgb: np.ndarray) -> list[Face]:
        """Every face the detector finds in an RGB uint8 ``(H, W, 3)`` image, unchecked."""
        return list(self._detector.detect(_check_rgb(rgb)))

    def find(self, rgb: np.ndarray, *, select: str = "largest") -> Face:
        """The face chosen by ``select`` (:func:`select_face`), checked by the gate.

        Raises:
            NoFaceError: no face was detected.
            FaceQualityError: the chosen face fails the plausibility gate.
            MultipleFacesError: ``select="single"`` and several faces are of similar size.
        """
        if select not in SELECTIONS:
            raise ConfigError(f"select={select!r}; expected one of {list(SELECTIONS)}")
        return self.choose(self.faces(rgb), rgb.shape, select=select)

    def choose(self, faces: list[Face], shape: tuple[int, ...], *, select: str) -> Face:
        """:meth:`find` on faces already detected in an image of ``shape``."""
        face = select_face(faces, shape, select=select)
        if self.gate is not None:
            self.gate.check(
                face.landmarks,
                shape,
                score=face.score,
                detector=self.detector,
                template=self._template,
            )
        return face

    def landmarks5(self, rgb: np.ndarray, *, select: str = "largest") -> np.ndarray:
        """Five landmarks ``(5, 2)`` float64 (x, y) of the face :meth:`find` chooses."""
        return self.find(rgb, select=select).landmarks

    def warp(self, rgb: np.ndarray, points: np.ndarray) -> np.ndarray:
        """Warp ``rgb`` so that the five ``points`` land on the template:
        ``(S, S, 3)`` uint8."""
        matrix = similarity_transform(points, self._template)
        return warp_affine(_check_rgb(rgb), matrix, self.config.image_size)

    def align(self, rgb: np.ndarray, *, select: str = "largest") -> np.ndarray:
        """Detect, check and warp one face: ``(S, S, 3)`` uint8, S = ``image_size``.

        Raises:
            NoFaceError: no face was detected (:class:`FaceQualityError`: none usable).
            MultipleFacesError: ``select="single"`` and several faces are of similar size.
        """
        return self.warp(rgb, self.landmarks5(rgb, select=select))

    def locate(
        self, rgb: np.ndarray, *, fallback: str, select: str = "largest"
    ) -> tuple[np.ndarray, str]:
        """The five points to warp and the outcome: the detected landmarks and
        ``"detected"``, or, with ``fallback="centre"`` and no usable face found, the fixed
        points of :func:`centre_landmarks` and ``"centre"``. ``fallback="none"`` raises
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
