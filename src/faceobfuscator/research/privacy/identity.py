"""An independent face recognizer for identity metrics: dlib's ResNet face descriptor
(``dlib_face_recognition_resnet_model_v1`` from ``face-recognition-models``), fed in its
own geometry.

dlib's descriptor expects a 150x150 chip cut the way ``dlib.get_face_chip`` cuts it (size
150, padding 0.25). Our faces are 112x112 ArcFace crops, and reconstructions exist only in
that frame, so every face (original, reference and reconstruction alike) is cut by one
fixed similarity :data:`CHIP_FROM_ARCFACE_112` from the crop to dlib's chip: the mean, over
detected LFW faces, of dlib's chip geometry expressed in ArcFace-crop coordinates
(:func:`measure_chip_matrix`). The chip covers crop x 7..106, y 22..121, so its bottom
tenth (below the chin, beyond the crop) is black for every face alike.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch

from faceobfuscator.client.alignment import similarity_transform, warp_affine
from faceobfuscator.client.detection import landmarks5_from_68, model_path
from faceobfuscator.errors import ConfigError, InputError
from faceobfuscator.protocol.config import ARCFACE_TEMPLATE_112, ProtocolConfig

__all__ = [
    "CHIP_FROM_ARCFACE_112",
    "CHIP_FROM_HOG_112",
    "CHIP_FROM_YUNET_112",
    "CHIP_SIZE",
    "DLIB_THRESHOLD",
    "DlibRecognizer",
    "cosine",
    "measure_chip_matrix",
    "to_uint8",
]

CHIP_SIZE = 150
#: dlib's standard same-person threshold on the Euclidean distance of descriptors
DLIB_THRESHOLD = 0.6

#: Similarity (2x3, crop (x, y) -> chip (x, y)) from the 112x112 ArcFace crop to dlib's
#: 150x150 face chip, for crops aligned on dlib's five points (``FaceAligner(detector="hog")``,
#: the first round's aligner). Made by ``measure_chip_matrix`` on 300 LFW images (296
#: detected) drawn with ``numpy.random.default_rng(0).choice(len(images), 300,
#: replace=False)`` from ``datasets.list_images('lfw', ...)``.
CHIP_FROM_HOG_112 = np.array(
    [
        [1.50756711, -0.01134356, -10.20096123],
        [0.01134356, 1.50756711, -33.93195657],
    ]
)

#: The same map for crops aligned on YuNet's five points (the client's default aligner,
#: whose eye points are pupils rather than dlib's eye-contour centres): made by
#: ``faceobf privacy judge`` (``measure_chip_matrix(..., aligner=FaceAligner(protocol))``)
#: on the same 300 LFW images (275 usable; results/privacy/judge.json). It differs from
#: :data:`CHIP_FROM_HOG_112` by at most 2.8 chip pixels at the crop's corners, and the
#: judge verifies 600 LFW test pairs of YuNet crops equally well with either (99.0%).
CHIP_FROM_YUNET_112 = np.array(
    [
        [1.5407, -0.01, -11.2472],
        [0.01, 1.5407, -35.8254],
    ]
)

#: The map the recognizer uses by default: the client's default aligner's.
CHIP_FROM_ARCFACE_112 = CHIP_FROM_YUNET_112


def _chip_geometry(details: Any) -> np.ndarray:
    """dlib ``chip_details`` -> 2x3 affine from the source image to the chip."""
    r, rows, cols = details.rect, details.rows, details.cols
    centre = np.array([(r.left() + r.right()) / 2, (r.top() + r.bottom()) / 2])
    sx = (r.right() - r.left()) / (cols - 1)
    sy = (r.bottom() - r.top()) / (rows - 1)
    c, s = np.cos(details.angle), np.sin(details.angle)
    lin = np.array([[c, -s], [s, c]]) @ np.diag([sx, sy])  # chip -> image, about the centre
    chip_to_image = np.eye(3)
    chip_to_image[:2, :2] = lin
    chip_to_image[:2, 2] = centre - lin @ np.array([(cols - 1) / 2, (rows - 1) / 2])
    return np.linalg.inv(chip_to_image)[:2]


def measure_chip_matrix(
    images: Iterable[np.ndarray], *, aligner: Any = None, max_offset: float = 30.0
) -> tuple[np.ndarray, int]:
    """Mean similarity ``(2, 3)`` float64 from the ArcFace 112 crop to dlib's chip over RGB
    uint8 images ``(H, W, 3)`` in which dlib finds a face, and how many faces it averaged.

    For each face dlib's 68 landmarks give dlib's chip (``get_face_chip_details(shape, 150,
    0.25)``); the crop's five points come from the same 68 landmarks (``aligner=None``: the
    first round's dlib aligner) or from ``aligner.landmarks5(rgb, select="central")`` (a
    :class:`~faceobfuscator.client.alignment.FaceAligner`, e.g. YuNet's), hence the map
    crop -> image -> chip. Faces whose crop centre lands more than ``max_offset`` chip
    pixels from the chip centre (dlib and the aligner chose different people) are skipped.

    Raises:
        InputError: no face was usable.
    """
    import dlib

    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(str(model_path("shape_predictor_68_face_landmarks.dat")))
    template = np.asarray(ARCFACE_TEMPLATE_112)
    centre = np.array([(CHIP_SIZE - 1) / 2, (CHIP_SIZE - 1) / 2])
    mats = []
    for rgb in images:
        rects = detector(rgb, 1)
        if not rects:
            continue
        shape = predictor(rgb, rects[0])
        if aligner is None:
            p68 = np.array([[shape.part(k).x, shape.part(k).y] for k in range(68)], float)
            points = landmarks5_from_68(p68)
        else:
            try:
                points = aligner.landmarks5(rgb, select="central")
            except InputError:
                continue
        image_to_crop = np.vstack([similarity_transform(points, template), [0, 0, 1]])
        image_to_chip = np.vstack(
            [_chip_geometry(dlib.get_face_chip_details(shape, CHIP_SIZE, 0.25)), [0, 0, 1]]
        )
        mat = (image_to_chip @ np.linalg.inv(image_to_crop))[:2]
        if np.abs(mat @ np.array([55.5, 55.5, 1.0]) - centre).max() > max_offset:
            continue
        mats.append(mat)
    if not mats:
        raise InputError("dlib found no usable face in any of the images")
    return np.mean(mats, axis=0), len(mats)


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """RGB ``(N, 3, H, W)`` in [0, 1] -> uint8 ``(N, H, W, 3)``, rounded."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise InputError(f"expected RGB images (N, 3, H, W), got {tuple(images.shape)}")
    x = images.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


@functools.lru_cache(maxsize=1)
def _model() -> Any:
    import dlib

    return dlib.face_recognition_model_v1(
        str(model_path("dlib_face_recognition_resnet_model_v1.dat"))
    )


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two ``(N, D)`` arrays."""
    num = (a * b).sum(axis=1)
    return num / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


class DlibRecognizer:
    """dlib's 128-D face descriptor on 112x112 ArcFace crops, cut to dlib's chip."""

    def __init__(self, protocol: ProtocolConfig, *, matrix: np.ndarray | None = None) -> None:
        if (
            protocol.image_size != 112
            or tuple(map(tuple, protocol.template)) != ARCFACE_TEMPLATE_112
        ):
            raise ConfigError(
                "the dlib chip box was measured for the 112x112 ArcFace template; re-measure "
                "it with measure_chip_matrix for this protocol and pass it as matrix="
            )
        self.protocol = protocol
        self.matrix = CHIP_FROM_ARCFACE_112 if matrix is None else np.asarray(matrix, float)

    def chip_digest(self) -> str:
        """SHA-256 (hex) of the chip map as float64: the descriptors depend on it, so caches
        of them are named by it."""
        return hashlib.sha256(np.asarray(self.matrix, np.float64).tobytes()).hexdigest()

    def chips(self, faces: np.ndarray) -> np.ndarray:
        """uint8 crops ``(N, 112, 112, 3)`` -> dlib chips ``(N, 150, 150, 3)``."""
        faces = np.asarray(faces)
        if faces.dtype != np.uint8 or faces.ndim != 4 or faces.shape[1:] != (112, 112, 3):
            raise InputError(
                f"expected uint8 crops (N, 112, 112, 3), got {faces.dtype} {faces.shape}"
            )
        return np.stack([warp_affine(f, self.matrix, CHIP_SIZE) for f in faces])

    def embed(self, faces: np.ndarray | torch.Tensor, *, batch_size: int = 64) -> np.ndarray:
        """Descriptors ``(N, 128)`` float64 of uint8 crops ``(N, 112, 112, 3)`` or of float
        RGB ``(N, 3, 112, 112)`` in [0, 1]."""
        arr = (
            to_uint8(faces)
            if isinstance(faces, torch.Tensor) and faces.is_floating_point()
            else np.asarray(faces)
        )
        chips = self.chips(arr)
        model = _model()
        out: list[np.ndarray] = []
        for start in range(0, len(chips), batch_size):
            batch = [np.ascontiguousarray(c) for c in chips[start : start + batch_size]]
            out.extend(
                np.asarray(v, dtype=np.float64) for v in model.compute_face_descriptor(batch)
            )
        return np.stack(out) if out else np.zeros((0, 128))

    @staticmethod
    def matches(a: np.ndarray, b: np.ndarray, *, threshold: float = DLIB_THRESHOLD) -> np.ndarray:
        """Row-wise 0/1: whether descriptors ``a[i]`` and ``b[i]`` are the same person."""
        return (np.linalg.norm(a - b, axis=1) < threshold).astype(np.float64)
