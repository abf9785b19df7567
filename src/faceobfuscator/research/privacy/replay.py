"""The replay attack, measured with a real model and real victims: the victims enrol a
photo and verify with another through the API, an attacker captures their requests on the
channel (scenario C) or the stored rows (D), re-obfuscates what it can read and submits it
as the victim (:func:`faceobfuscator.research.privacy.capture.replay_acceptance`).

Two deployments: ``plain`` (the paper's design) and ``sealed`` (sealed payloads required,
single-use challenges, templates encrypted at rest). Each runs in this process behind
FastAPI's ``TestClient``, in a folder of its own with fresh keys.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch
from fastapi.testclient import TestClient

from faceobfuscator.client.sdk import Client
from faceobfuscator.errors import ConfigError, FaceObfuscatorError
from faceobfuscator.protocol.features import protect_faces
from faceobfuscator.protocol.payload import encode_payload
from faceobfuscator.protocol.sealing import ServerKeyPair
from faceobfuscator.research.privacy.capture import Capture, ChannelTap, replay_acceptance
from faceobfuscator.research.privacy.metrics import mean_interval
from faceobfuscator.research.privacy.pack import VictimFaces
from faceobfuscator.server import ServerSettings, create_app, key_digest, new_api_key
from faceobfuscator.server.security.envelope import MasterKey
from faceobfuscator.server.storage import open_storage

__all__ = ["DEPLOYMENTS", "LEAKS", "measure_replay"]

#: The deployments compared.
DEPLOYMENTS = ("plain", "sealed")
#: What the attacker replays, by scenario.
LEAKS = {
    "enrolment request": "C",
    "verification request": "C",
    "stored template": "D",
}


def _settings(
    deployment: str, model_dir: Path, folder: Path, keys: dict[str, str]
) -> ServerSettings:
    if deployment not in DEPLOYMENTS:
        raise ConfigError(f"unknown deployment {deployment!r}; known: {list(DEPLOYMENTS)}")
    folder.mkdir(parents=True, exist_ok=True)
    extra: dict[str, Any] = {}
    if deployment == "sealed":
        key_file = folder / "server.key"
        ServerKeyPair.generate().save(key_file, overwrite=True)
        extra = {
            "sealing_key_file": key_file,
            "require_sealed": True,
            "master_key": MasterKey.generate().to_base64(),
        }
    return ServerSettings(
        model_dir=model_dir,
        db_url=f"sqlite:///{folder / 'gallery.db'}",
        admin_key_hashes=(key_digest(keys["admin"]),),
        client_key_hashes=(key_digest(keys["client"]),),
        sqlite_synchronous="NORMAL",
        **extra,
    )


def _payloads(faces: np.ndarray, client: Client, generator: torch.Generator) -> list[bytes]:
    """What the victims' client sends for aligned faces: obfuscated with the server's
    protocol, one draw per face."""
    protocol = client.protocol
    features = protect_faces(faces, protocol, generator=generator).numpy()
    return [encode_payload(f, protocol) for f in features]


def _rate(outcomes: list[bool]) -> dict[str, Any]:
    return mean_interval(np.asarray(outcomes, dtype=np.float64), share=True).to_dict()


def _one_deployment(
    deployment: str,
    model_dir: Path,
    victims: VictimFaces,
    folder: Path,
    generator: torch.Generator,
) -> list[dict[str, Any]]:
    keys = {"admin": new_api_key(), "client": new_api_key()}
    settings = _settings(deployment, model_dir, folder, keys)
    names = [f"victim-{i:03d}" for i in range(len(victims.probe))]
    tap = ChannelTap()
    with TestClient(create_app(settings)) as http:
        admin = Client(str(http.base_url), keys["admin"], http=http)
        user = Client(str(http.base_url), keys["client"], http=http)
        enrol = _payloads(victims.reference, admin, generator)
        probe = _payloads(victims.probe, admin, generator)
        http.event_hooks = {"request": [tap], "response": []}
        for name, payload in zip(names, enrol, strict=True):
            admin.enroll_payload(name, payload)
        legitimate = [user.verify_payload(n, p).match for n, p in zip(names, probe, strict=True)]
        http.event_hooks = {"request": [], "response": []}
        storage = open_storage(settings.db_url)
        try:
            refs = storage.refs(storage.template_ids())
            rows = storage.payloads([r.template_id for r in refs])
        finally:
            storage.close()
        n = len(names)
        captured = {
            "enrolment request": tap.captures[:n],
            "verification request": tap.captures[n:],
            "stored template": [Capture(r.name, rows[r.template_id]) for r in refs],
        }
        if [c.victim for c in tap.captures] != names + names:
            raise FaceObfuscatorError("the channel tap saw other requests than the victims' own")
        out = [
            {
                "deployment": deployment,
                "leak": "none: the victims verify themselves",
                "scenario": "-",
                "attempts": n,
                "acceptance": _rate(legitimate),
                "outcomes": dict(Counter("accepted" if m else "rejected" for m in legitimate)),
            }
        ]
        for leak, scenario in LEAKS.items():
            result = replay_acceptance(
                http, keys["client"], captured[leak], scenario=scenario, generator=generator
            )
            if result.deployment != deployment:
                raise FaceObfuscatorError(f"the attacker saw a {result.deployment!r} deployment")
            out.append(
                {
                    "deployment": deployment,
                    "leak": leak,
                    "scenario": scenario,
                    "attempts": result.attempts,
                    "acceptance": _rate([o == "accepted" for o in result.outcomes]),
                    "outcomes": dict(Counter(result.outcomes)),
                }
            )
    return out


def measure_replay(
    model_dir: str | Path,
    victims: VictimFaces,
    *,
    folder: str | Path,
    generator: torch.Generator,
    deployments: tuple[str, ...] = DEPLOYMENTS,
) -> list[dict[str, Any]]:
    """Rows of the replay measurement, per deployment: the victims' own acceptance rate
    (verifying their probe photo against their enrolled reference photo), then the replay
    acceptance rate of each leak in :data:`LEAKS`.

    Args:
        model_dir: the server's model (a ``faceobfuscator`` model directory).
        victims: aligned faces; ``reference`` is enrolled, ``probe`` verifies.
        folder: an empty folder for the deployments' databases and keys.
        generator: the victims' client draws and the attacker's re-obfuscation draws.
    """
    return [
        row
        for d in deployments
        for row in _one_deployment(d, Path(model_dir), victims, Path(folder) / d, generator)
    ]
