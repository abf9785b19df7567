"""The replay attack, measured: an attacker holding what leaked from a deployment submits it
through the API as the victim.

What leaks depends on the scenario and the deployment: on the channel (scenario C) the
attacker sees request bodies, in the database (D) the stored rows. In plain mode both are
obfuscated features ``e``; because obfuscation composes, another random sign pattern and
another ``b**v`` applied to ``e`` give a fresh-looking valid payload of the same face
(:func:`reobfuscate`), which the server cannot tell from a new capture. In a sealed
deployment the channel carries payloads sealed to the server's key and bound to a spent
challenge, and the database holds envelopes under the master key: the attacker can replay
them as they are (with their own challenge or a fresh one) but cannot read, re-obfuscate or
re-bind them.

The attacker is a legitimate API client (it holds a client key, as the paper's black-box
attacker holds a copy of the client) and uses sealing itself whenever the server offers it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote

import httpx
import numpy as np
import torch

from faceobfuscator.client.sealing import seal_request
from faceobfuscator.errors import InputError, PayloadError
from faceobfuscator.protocol.challenge import Challenge
from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.protocol.obfuscation import obfuscate, recover
from faceobfuscator.protocol.payload import (
    PAYLOAD_MEDIA_TYPE,
    SEALED_MEDIA_TYPE,
    decode_payload,
    encode_payload,
)
from faceobfuscator.protocol.sealing import ServerPublicKey

__all__ = ["Capture", "ReplayResult", "ChannelTap", "reobfuscate", "replay_acceptance"]

_SEALED = SEALED_MEDIA_TYPE
_PLAIN = PAYLOAD_MEDIA_TYPE


@dataclass(frozen=True)
class Capture:
    """What the attacker holds about one victim: a request body seen on the channel (C) or
    a stored row (D), and the challenge a captured sealed request carried."""

    victim: str
    data: bytes
    challenge: str | None = None


@dataclass(frozen=True)
class ReplayResult:
    """Per capture, ``"accepted"`` or why every attempt was refused. ``deployment`` is
    ``"plain"``, ``"sealed"`` (sealed payloads required) or ``"sealing optional"`` (which
    protects nothing: the attacker sends plain payloads, or seals them itself)."""

    scenario: str
    deployment: str
    outcomes: tuple[str, ...]

    @property
    def attempts(self) -> int:
        return len(self.outcomes)

    @property
    def accepted(self) -> int:
        return sum(o == "accepted" for o in self.outcomes)

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / self.attempts if self.outcomes else float("nan")


class ChannelTap:
    """An eavesdropper on the channel (scenario C): records the body of every verify and
    enrol request an ``httpx`` client sends. Install it as a request hook:
    ``httpx.Client(event_hooks={"request": [tap]})`` (or on an SDK client's ``http``)."""

    def __init__(self) -> None:
        self.captures: list[Capture] = []

    def __call__(self, request: httpx.Request) -> None:
        path = request.url.path
        if path == "/v1/verify":
            victim = request.url.params.get("subject", "")
        elif path.startswith("/v1/subjects/") and path.endswith("/templates"):
            victim = unquote(path.split("/")[3])
        else:
            return
        body = request.read()
        self.captures.append(Capture(victim, body, request.url.params.get("challenge")))


def reobfuscate(
    payload: bytes, config: ProtocolConfig, *, generator: torch.Generator | None = None
) -> bytes:
    """A fresh-looking payload of the same face: the captured feature ``e`` times another
    random sign pattern and another ``b**v``. The scale is first normalised (the server's
    own public identity recovery), so that the new ``b**v`` cannot push values out of the
    float32 range; the result is ``e`` times signs times ``b**(v + r)``."""
    e = decode_payload(payload, config).feature
    fresh = obfuscate(np.asarray(recover(e, config)), config, generator=generator)
    return encode_payload(np.asarray(fresh), config)


def replay_acceptance(
    http: httpx.Client,
    api_key: str,
    captures: Sequence[Capture],
    *,
    scenario: str,
    generator: torch.Generator | None = None,
) -> ReplayResult:
    """Submit each capture as a verification of its victim, the best way the attacker can,
    and report which were accepted (score at or above the server's threshold).

    Args:
        http: a client whose base URL is the server's.
        api_key: the attacker's API key (a client key suffices).
        captures: what leaked, one per victim attempt.
        scenario: ``"C"`` (channel) or ``"D"`` (database), for the report.
        generator: randomness of the re-obfuscation; default the secure source.
    """
    if scenario not in ("C", "D"):
        raise InputError(f"scenario={scenario!r}; expected 'C' (channel) or 'D' (database)")
    attacker = _Attacker(http, api_key)
    outcomes = []
    for capture in captures:
        try:
            payload = reobfuscate(capture.data, attacker.config, generator=generator)
        except PayloadError:  # sealed or encrypted: replay it as it is
            outcomes.append(attacker.replay_opaque(capture))
        else:
            outcomes.append(attacker.submit_fresh(capture.victim, payload))
    deployment = (
        "sealed" if attacker.required else "plain" if attacker.key is None else "sealing optional"
    )
    return ReplayResult(scenario, deployment, tuple(outcomes))


class _Attacker:
    def __init__(self, http: httpx.Client, api_key: str) -> None:
        self.http = http
        self.auth = {"Authorization": f"Bearer {api_key}"}
        info = http.get("/v1/protocol").json()
        self.config = ProtocolConfig.from_dict(info["config"])
        sealing = info.get("sealing")
        self.key = None if sealing is None else ServerPublicKey.from_base64(sealing["public_key"])
        self.required = bool(sealing and sealing["required"])

    def _challenge(self, victim: str) -> Challenge:
        r = self.http.post(
            "/v1/challenge", json={"operation": "verify", "subject": victim}, headers=self.auth
        )
        r.raise_for_status()
        c = r.json()
        return Challenge(c["challenge"], c["operation"], c["subject"], c["expires_at"])

    def _verify(self, victim: str, body: bytes, media: str, challenge: str | None) -> str:
        params = {"subject": victim} | ({"challenge": challenge} if challenge else {})
        r = self.http.post(
            "/v1/verify", content=body, params=params, headers=self.auth | {"Content-Type": media}
        )
        if r.status_code == 200:
            return "accepted" if r.json()["match"] else "rejected: below threshold"
        try:
            detail = str(r.json().get("detail", ""))
        except ValueError:
            detail = r.text
        return f"refused {r.status_code}: {detail[:80]}"

    def submit_fresh(self, victim: str, payload: bytes) -> str:
        if self.key is None:
            return self._verify(victim, payload, _PLAIN, None)
        challenge = self._challenge(victim)
        blob = seal_request(payload, self.key, challenge=challenge, protocol=self.config)
        return self._verify(victim, blob, _SEALED, challenge.id)

    def replay_opaque(self, capture: Capture) -> str:
        tries: list[tuple[str, str | None]] = []
        if capture.challenge is not None:
            tries.append((_SEALED, capture.challenge))
        if self.key is not None:
            tries.append((_SEALED, self._challenge(capture.victim).id))
        tries.append((_PLAIN, None))
        outcome = ""
        for media, challenge in tries:
            outcome = self._verify(capture.victim, capture.data, media, challenge)
            if outcome == "accepted":
                break
        return outcome
