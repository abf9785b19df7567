"""Scoring reconstructions: pixel metrics against the originals, identity metrics with the
independent recognizer, and SRRA with the project's own client and server model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from faceobfuscator.errors import InputError
from faceobfuscator.recognition.modeldir import RecognitionModel
from faceobfuscator.research.privacy.identity import DlibRecognizer, cosine, to_uint8
from faceobfuscator.research.privacy.metrics import mean_interval, mse, psnr, ssim, to_unit_rgb
from faceobfuscator.research.privacy.pack import VictimFaces

__all__ = [
    "VictimSet",
    "average_face",
    "score",
    "srra_accepts",
    "srra_reference_points",
    "baselines",
]


@dataclass
class VictimSet:
    """The victims of one benchmark with everything that does not depend on the attack.

    Attributes:
        dataset: benchmark name.
        probe: uint8 ``(N, S, S, 3)`` faces whose features leak.
        reference: uint8 ``(N, S, S, 3)`` other photos of the same people.
        probe_rgb: ``probe`` as float ``(N, 3, S, S)`` in [0, 1].
        probe_emb, reference_emb: dlib descriptors ``(N, 128)``.
        identities: identity folder of each victim.
    """

    dataset: str
    probe: np.ndarray
    reference: np.ndarray
    probe_rgb: torch.Tensor
    probe_emb: np.ndarray
    reference_emb: np.ndarray
    identities: list[str]

    @classmethod
    def from_faces(cls, victims: VictimFaces, recognizer: DlibRecognizer) -> VictimSet:
        return cls(
            victims.dataset,
            victims.probe,
            victims.reference,
            to_unit_rgb(victims.probe),
            recognizer.embed(victims.probe),
            recognizer.embed(victims.reference),
            victims.identities,
        )


def average_face(faces: np.ndarray) -> np.ndarray:
    """The pixel-wise mean of uint8 faces ``(N, S, S, 3)``, rounded to uint8: the best an
    attacker can output when its input tells it nothing about the face."""
    return np.round(faces.astype(np.float64).mean(0)).astype(np.uint8)


def _summary(values: Any, *, share: bool = False) -> dict[str, Any]:
    return mean_interval(values, share=share).to_dict()


def srra_accepts(
    model: RecognitionModel,
    images: np.ndarray,
    references: np.ndarray,
    *,
    generator: torch.Generator,
) -> np.ndarray:
    """0/1 per victim: whether ``images`` (uint8 ``(N, S, S, 3)`` aligned faces), replayed
    as photos through the client of the model's scheme (a fresh obfuscation) and the model,
    are accepted as the person enrolled from ``references`` (the same shape; each enrolled
    through the client too) at the model's calibrated threshold."""
    if model.threshold is None:
        raise InputError("the model has no calibrated threshold; SRRA needs one")
    if images.shape != references.shape:
        raise InputError(
            f"images {images.shape} and references {references.shape} must pair one to one"
        )
    scheme = model.scheme
    a = model.embed_sent(scheme.client_features(torch.from_numpy(images), generator=generator))
    b = model.embed_sent(scheme.client_features(torch.from_numpy(references), generator=generator))
    return ((a * b).sum(dim=1) >= model.threshold).double().numpy()


def srra_reference_points(
    model: RecognitionModel,
    victims: VictimSet,
    average: np.ndarray,
    *,
    generator: torch.Generator,
) -> dict[str, Any]:
    """SRRA of the victims' own probe photos (the ceiling: the model's true acceptance
    rate on these pairs), of another victim's probe photo (the impostor rate) and of the
    attacker's average face ``(S, S, 3)`` (the floor)."""
    ref = victims.reference
    avg = np.repeat(average[None], len(ref), axis=0)

    def rate(images: np.ndarray) -> dict[str, Any]:
        return _summary(srra_accepts(model, images, ref, generator=generator), share=True)

    return {
        "ceiling": rate(victims.probe),
        "impostor": rate(np.roll(victims.probe, 1, axis=0)),
        "floor": rate(avg),
    }


def score(
    recon: torch.Tensor,
    victims: VictimSet,
    recognizer: DlibRecognizer,
    *,
    srra: tuple[RecognitionModel, torch.Generator] | None = None,
) -> tuple[dict[str, Any], np.ndarray]:
    """Metrics of reconstructions ``(N, 3, S, S)`` of ``victims``: MSE, PSNR, SSIM against
    the probe; COS between the dlib descriptors of reconstruction and probe; ``match``,
    whether dlib matches the reconstruction to the reference photo (distance < 0.6); and
    SRRA when a model is given. Also returns the reconstructions' descriptors."""
    emb = recognizer.embed(recon)
    out: dict[str, Any] = {
        "mse": _summary(mse(recon, victims.probe_rgb)),
        "psnr": _summary(psnr(recon, victims.probe_rgb)),
        "ssim": _summary(ssim(recon, victims.probe_rgb)),
        "cos": _summary(cosine(emb, victims.probe_emb)),
        "match": _summary(recognizer.matches(emb, victims.reference_emb), share=True),
    }
    if srra is not None:
        model, g = srra
        out["srra"] = _summary(
            srra_accepts(model, to_uint8(recon), victims.reference, generator=g), share=True
        )
    return out, emb


def baselines(
    victims: VictimSet, average_face: np.ndarray, recognizer: DlibRecognizer
) -> dict[str, Any]:
    """Reference points for one benchmark: the originals' own match rate to their other
    photos (ceiling), another victim's photo (impostor rate), and the attacker's average
    face (floor), with the average face's pixel metrics."""
    avg = np.repeat(average_face[None], len(victims.probe), axis=0)
    avg_rgb = torch.from_numpy(avg).permute(0, 3, 1, 2).float() / 255.0
    avg_emb = recognizer.embed(avg[:1])
    ref = victims.reference_emb
    return {
        "victims": len(victims.probe),
        "ceiling_match": _summary(recognizer.matches(victims.probe_emb, ref), share=True),
        "impostor_match": _summary(
            recognizer.matches(np.roll(victims.probe_emb, 1, axis=0), ref), share=True
        ),
        "floor_match": _summary(
            recognizer.matches(np.repeat(avg_emb, len(ref), 0), ref), share=True
        ),
        "floor_cos": _summary(cosine(np.repeat(avg_emb, len(ref), 0), victims.probe_emb)),
        "floor_mse": _summary(mse(avg_rgb, victims.probe_rgb)),
        "floor_psnr": _summary(psnr(avg_rgb, victims.probe_rgb)),
        "floor_ssim": _summary(ssim(avg_rgb, victims.probe_rgb)),
    }
