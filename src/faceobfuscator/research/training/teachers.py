"""Teachers for distillation: pretrained face recognizers that embed the *original*
aligned face, whose embeddings the scheme's network (which sees only what the server
sees) learns to reproduce.

A teacher is registered by name (:func:`get_teacher`); :func:`teacher_embeddings`
computes its embedding of each face once and caches it by the face's pixel hash in a folder
named after the teacher and its weights' fingerprint, so a training run never calls the
teacher at every epoch and later packs of the same faces reuse the cache.

- ``sface``: OpenCV Zoo's SFace (:mod:`faceobfuscator.recognition.sface`), 128-d, about
  40 faces/s on two CPU cores in bf16 (cosine >= 0.9987 to float32 on LFW crops).
- ``dlib``: dlib's ResNet (``face-recognition-models``), 128-d, fed its own chip geometry
  (:class:`~faceobfuscator.research.privacy.identity.DlibRecognizer`); about 10 faces/s.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from faceobfuscator.errors import InputError
from faceobfuscator.registry import Registry

__all__ = [
    "Teacher",
    "EmbeddingStore",
    "face_keys",
    "get_teacher",
    "list_teachers",
    "teacher_embeddings",
]


class Teacher(Protocol):
    """Embeds aligned uint8 faces ``(N, S, S, 3)`` into L2-normalised float32 ``(N, dim)``."""

    name: str
    dim: int

    def fingerprint(self) -> str:
        """SHA-256 (hex) naming the teacher's weights and preprocessing."""
        ...

    def embed(self, faces: np.ndarray) -> np.ndarray: ...


def _check_faces(faces: np.ndarray) -> np.ndarray:
    if not isinstance(faces, np.ndarray) or faces.dtype != np.uint8 or faces.ndim != 4:
        got = f"{faces.dtype} {faces.shape}" if isinstance(faces, np.ndarray) else type(faces)
        raise InputError(f"expected aligned uint8 faces (N, S, S, 3), got {got}")
    if faces.shape[3] != 3:
        raise InputError(f"expected RGB faces (N, S, S, 3), got {faces.shape}")
    return faces


class SFaceTeacher:
    """SFace on the RGB face with its own pixel scaling ``(x - 127.5) / 128``.

    Args:
        bf16: run under bf16 autocast (about 2.4x faster on AVX-512-BF16 CPUs).
        batch_size: faces per forward pass.
    """

    name = "sface"
    dim = 128

    def __init__(self, *, bf16: bool = True, batch_size: int = 128) -> None:
        from faceobfuscator.recognition.sface import SFACE_SHA256, pretrained_sface

        self._net = pretrained_sface(3).eval().to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        self._bf16, self._batch = bf16, batch_size
        self._fp = hashlib.sha256(f"{SFACE_SHA256}:bf16={bf16}".encode()).hexdigest()

    def fingerprint(self) -> str:
        return self._fp

    def embed(self, faces: np.ndarray) -> np.ndarray:
        faces = _check_faces(faces)
        out = np.empty((len(faces), self.dim), np.float32)
        with (
            torch.inference_mode(),
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=self._bf16),
        ):
            for i in range(0, len(faces), self._batch):
                x = torch.from_numpy(faces[i : i + self._batch]).permute(0, 3, 1, 2).float()
                x = ((x - 127.5) / 128.0).contiguous(memory_format=torch.channels_last)
                out[i : i + self._batch] = self._net(x).float().numpy()
        return out / np.linalg.norm(out, axis=1, keepdims=True).clip(1e-12)


class DlibTeacher:
    """dlib's ResNet descriptor of the face, on its own chip geometry.

    Args:
        matrix: the 2x3 affine map from our 112x112 crop to dlib's 150x150 chip (default:
            :class:`~faceobfuscator.research.privacy.identity.DlibRecognizer`'s). The
            fingerprint covers it, so cached embeddings of another map are not reused.
    """

    name = "dlib"
    dim = 128

    def __init__(self, *, matrix: np.ndarray | None = None) -> None:
        from faceobfuscator.protocol.config import ProtocolConfig
        from faceobfuscator.research.privacy.identity import DlibRecognizer

        self._rec = DlibRecognizer(ProtocolConfig(), matrix=matrix)
        chip = self._rec.chip_digest()
        self._fp = hashlib.sha256(
            f"dlib_face_recognition_resnet_model_v1:{chip}".encode()
        ).hexdigest()

    def fingerprint(self) -> str:
        return self._fp

    def embed(self, faces: np.ndarray) -> np.ndarray:
        e = np.asarray(self._rec.embed(_check_faces(faces)), np.float32)
        return e / np.linalg.norm(e, axis=1, keepdims=True).clip(1e-12)


_TEACHERS: Registry[Callable[[], Teacher]] = Registry("teacher")
_TEACHERS.add("sface", SFaceTeacher)
_TEACHERS.add("dlib", DlibTeacher)


def list_teachers() -> list[str]:
    """Registered teacher names, sorted."""
    return _TEACHERS.names()


def get_teacher(name: str) -> Teacher:
    """A new teacher by name; an unknown name lists the known ones."""
    return _TEACHERS.get(name)()


def face_keys(faces: np.ndarray) -> list[str]:
    """A content key per face: the SHA-256 (first 32 hex digits) of its uint8 pixels."""
    return [hashlib.sha256(np.ascontiguousarray(f).tobytes()).hexdigest()[:32] for f in faces]


class EmbeddingStore:
    """Embeddings by face key, kept in ``folder`` as ``keys.npy`` and ``embeddings.npy``
    (rewritten atomically, so an interrupted run keeps what it had saved)."""

    def __init__(self, folder: str | Path, dim: int) -> None:
        self.folder, self.dim = Path(folder), dim
        self._rows: dict[str, int] = {}
        self._emb = np.zeros((0, dim), np.float32)
        keys_path, emb_path = self.folder / "keys.npy", self.folder / "embeddings.npy"
        if keys_path.is_file() and emb_path.is_file():
            keys, emb = np.load(keys_path), np.load(emb_path)
            if len(keys) == len(emb) and emb.ndim == 2 and emb.shape[1] == dim:
                self._rows = {str(k): i for i, k in enumerate(keys)}
                self._emb = emb.astype(np.float32)

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, keys: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(found, rows)``: a bool mask over ``keys`` and the embeddings of the found ones."""
        found = np.array([k in self._rows for k in keys], bool)
        rows = [self._rows[k] for k, f in zip(keys, found, strict=True) if f]
        return found, self._emb[rows]

    def add(self, keys: list[str], embeddings: np.ndarray) -> None:
        new = []
        for i, k in enumerate(keys):  # a face repeated within ``keys`` is stored once
            if k not in self._rows:
                self._rows[k] = len(self._rows)
                new.append(i)
        self._emb = np.concatenate([self._emb, embeddings[new].astype(np.float32)])
        self.folder.mkdir(parents=True, exist_ok=True)
        ordered = sorted(self._rows, key=self._rows.__getitem__)
        for name, arr in (("keys", np.asarray(ordered)), ("embeddings", self._emb)):
            tmp = self.folder / f".{name}.tmp.npy"
            np.save(tmp, arr)
            os.replace(tmp, self.folder / f"{name}.npy")


def teacher_embeddings(
    faces: np.ndarray,
    teacher: Teacher,
    *,
    cache_dir: str | Path | None = None,
    progress: bool = False,
    chunk: int = 2048,
) -> np.ndarray:
    """The teacher's L2-normalised embeddings ``(N, dim)`` float32 of uint8 faces
    ``(N, S, S, 3)``, computed once per face: with ``cache_dir``, each face's embedding is
    stored under its pixels' hash in ``cache_dir/<teacher>-<fingerprint[:12]>/`` (saved
    after every ``chunk`` faces, so an interrupted run resumes) and never computed again.

    Raises:
        InputError: faces of the wrong shape or dtype.
    """
    from tqdm import tqdm

    faces = _check_faces(faces)
    out = np.empty((len(faces), teacher.dim), np.float32)
    keys = face_keys(faces)
    store = None
    todo = np.arange(len(faces))
    if cache_dir is not None:
        store = EmbeddingStore(
            Path(cache_dir) / f"{teacher.name}-{teacher.fingerprint()[:12]}", teacher.dim
        )
        found, rows = store.get(keys)
        out[found] = rows
        todo = np.flatnonzero(~found)
    for i in tqdm(range(0, len(todo), chunk), desc=f"teacher {teacher.name}", disable=not progress):
        idx = todo[i : i + chunk]
        out[idx] = teacher.embed(faces[idx])
        if store is not None:
            store.add([keys[j] for j in idx], out[idx])
    return out
