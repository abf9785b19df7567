"""Reconstruction attacks against what a sealed deployment leaks.

A sealed deployment puts on the channel (scenario C) only payloads sealed with HPKE to the
server's public key, and in its database (D) only templates encrypted under a data key
that the master key wraps. The attacker of the paper's threat model still runs its own copy
of the client: it seals its own faces' payloads to the published key (C), and, at its
strongest, reads from the leaked database the rows of faces it enrolled itself (D). So it
can train a reconstruction network on (ciphertext, face) pairs exactly as on (feature,
face) pairs; its input is the ciphertext's bytes, one byte per value in [-1, 1], laid out as
``ceil(bytes / S**2)`` channels of ``S x S`` (zero-padded).

Ciphertexts under fresh keys are indistinguishable from random bytes, so the best such a
network can learn is a constant: the attacker's mean face. :func:`attack_sealed` trains it
and scores it like every other reconstruction; the figures must sit at the mean-face floor.
"""

from __future__ import annotations

import itertools
import math
import secrets
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from faceobfuscator.client.sealing import seal_request
from faceobfuscator.errors import InputError
from faceobfuscator.protocol.challenge import Challenge
from faceobfuscator.protocol.payload import encode_payload
from faceobfuscator.protocol.sealing import ServerKeyPair, ServerPublicKey
from faceobfuscator.recognition.modeldir import RecognitionModel
from faceobfuscator.recognition.schemes import Scheme
from faceobfuscator.research.privacy.attacks import AttackSettings, get_attack
from faceobfuscator.research.privacy.evaluate import (
    VictimSet,
    average_face,
    baselines,
    score,
    srra_reference_points,
)
from faceobfuscator.research.privacy.identity import DlibRecognizer, to_uint8
from faceobfuscator.research.privacy.metrics import to_unit_rgb
from faceobfuscator.research.privacy.pack import VictimFaces
from faceobfuscator.research.privacy.run import batch_source
from faceobfuscator.research.privacy.variants import Leak, Preprocessor
from faceobfuscator.server.security.envelope import MasterKey, encrypt_record

__all__ = ["blob_maps", "byte_statistics", "sealed_leak", "attack_sealed"]

Log = Callable[[str], None]


def blob_maps(blobs: list[bytes], size: int) -> torch.Tensor:
    """Equal-length byte strings as float maps ``(N, ceil(len / size**2), size, size)``:
    byte ``k`` of blob ``i`` at flat position ``k``, scaled to [-1, 1]; zeros pad the end.
    Also the scaled bytes of a plain payload (a byte-level attacker)."""
    if not blobs or len({len(b) for b in blobs}) != 1:
        raise InputError(
            f"expected byte strings of one length, got lengths {sorted({len(b) for b in blobs})}"
        )
    channels = math.ceil(len(blobs[0]) / size**2)
    flat = np.zeros((len(blobs), channels * size**2), np.float32)
    for i, b in enumerate(blobs):
        flat[i, : len(b)] = np.frombuffer(b, np.uint8) / np.float32(127.5) - 1
    return torch.from_numpy(flat).reshape(len(blobs), channels, size, size)


def sealed_leak(
    scenario: str, scheme: Scheme, *, public_key: ServerPublicKey, master: MasterKey
) -> tuple[Leak, Callable[[torch.Tensor, torch.Generator], list[bytes]]]:
    """What a sealed deployment leaks of uint8 faces, as network input and as bytes:
    scenario C the request bodies (payloads sealed to ``public_key`` for a verify challenge
    of their own), D the stored rows (payloads encrypted under ``master``). The client's
    obfuscation draws from ``generator``; the encryption draws its keys and nonces from the
    operating system, as the deployment does."""
    if scenario not in ("C", "D"):
        raise InputError(f"scenario={scenario!r}; expected 'C' (channel) or 'D' (database)")
    protocol = scheme.protocol
    ids = itertools.count()

    def blobs(faces: torch.Tensor, generator: torch.Generator) -> list[bytes]:
        sent = scheme.client_features(faces, generator=generator)
        features = (sent if scenario == "C" else scheme.stored(sent)).cpu().numpy()
        out = []
        for f in features:
            payload, i = encode_payload(f, protocol), next(ids)
            if scenario == "C":
                c = Challenge(secrets.token_hex(16), "verify", f"s{i}", time.time() + 120)
                out.append(seal_request(payload, public_key, challenge=c, protocol=protocol))
            else:
                out.append(encrypt_record(payload, master, subject=f"s{i}", record_id=i))
        return out

    def leak(faces: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return blob_maps(blobs(faces, generator), protocol.image_size).to(faces.device)

    return leak, blobs


def byte_statistics(blobs: list[bytes], again: list[bytes]) -> dict[str, float]:
    """How random the victims' ciphertexts look. Byte positions equal in every blob (the
    format's header: magic, version, key id) are counted and left out; of the rest, the
    bytes' mean and standard deviation (uniform bytes: 127.5 and 73.9) and the share of
    bytes equal between two encryptions ``again`` of the same payloads (1/256 = 0.0039 for
    independent random bytes)."""
    a = np.stack([np.frombuffer(b, np.uint8) for b in blobs])
    b = np.stack([np.frombuffer(b, np.uint8) for b in again])
    varying = ~(a == a[:1]).all(axis=0)
    a, b = a[:, varying], b[:, varying]
    return {
        "constant_bytes": int((~varying).sum()),
        "byte_mean": float(a.mean()),
        "byte_std": float(a.std()),
        "equal_bytes_between_two_encryptions": float((a == b).mean()),
    }


def attack_sealed(
    scenario: str,
    scheme: Scheme,
    attacker: np.ndarray,
    victims: VictimFaces,
    *,
    attack: str,
    settings: AttackSettings,
    recognizer: DlibRecognizer,
    model: RecognitionModel,
    seed: int,
    log: Log = print,
) -> tuple[dict[str, Any], np.ndarray]:
    """Train ``attack`` on the attacker's faces' sealed leaks for ``scenario``, reconstruct
    the victims' probe photos from theirs, and score the reconstructions (pixel, dlib
    identity and SRRA figures) beside the mean-face floor and the originals' ceiling.
    Returns the results and the reconstructions (uint8 ``(N, S, S, 3)``)."""
    public_key = ServerKeyPair.generate().public_key
    leak, blobs = sealed_leak(scenario, scheme, public_key=public_key, master=MasterKey.generate())
    faces = torch.from_numpy(attacker)
    g = torch.Generator().manual_seed(seed)
    probe = torch.from_numpy(victims.probe)
    probe_blobs = blobs(probe, g)
    in_channels = blob_maps(probe_blobs[:1], scheme.protocol.image_size).shape[1]
    pre = Preprocessor("sealed", scheme, (), (), in_channels, notes="ciphertext bytes")
    net = get_attack(attack, in_channels, settings, seed=seed)
    train = net.fit(batch_source(faces, leak, pre, batch_size=settings.batch_size, generator=g))
    log(
        f"sealed {scenario}: trained {attack} on {in_channels}-channel ciphertext maps, "
        f"{train.steps} steps in {train.seconds:.0f} s, last losses "
        f"{[round(v, 4) for v in train.losses[-3:]]}"
    )
    recon = net.reconstruct(blob_maps(probe_blobs, scheme.protocol.image_size))
    vs = VictimSet.from_faces(victims, recognizer)
    average = average_face(attacker)
    metrics, _ = score(recon, vs, recognizer, srra=(model, g))
    avg = to_unit_rgb(average[None])
    return {
        "scenario": scenario,
        "attack": attack,
        "input_channels": in_channels,
        "blob_bytes": len(probe_blobs[0]),
        "training": train.to_dict(),
        "metrics": metrics,
        "ciphertexts": byte_statistics(probe_blobs, blobs(probe, g)),
        "output": {
            # a constant output has no spread across victims; the originals' spread for scale
            "spread_across_victims": float(recon.std(dim=0).mean()),
            "originals_spread": float(vs.probe_rgb.std(dim=0).mean()),
            "mean_abs_difference_to_average_face": float((recon - avg).abs().mean()),
        },
        "baselines": baselines(vs, average, recognizer),
        "srra_baselines": srra_reference_points(model, vs, average, generator=g),
    }, to_uint8(recon)
