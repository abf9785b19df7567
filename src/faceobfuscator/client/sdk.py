"""The client SDK: :class:`Client` talks to a recognition server.

Detection, alignment, the frequency transform and obfuscation run locally
(:func:`faceobfuscator.client.protect_image`); only the payload is sent, as the raw body of
an ``application/octet-stream`` request. The protocol comes from the server's
``/v1/protocol`` and is checked against its hash before any payload is made.

When the server publishes a sealing key, every payload is sealed to it and bound to a
single-use challenge (:mod:`faceobfuscator.client.sealing`); pin the key's fingerprint with
``server_key_fingerprint`` so that a changed key, or a server that stops sealing, is
refused. Plain payloads offer no replay protection.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

import httpx

from faceobfuscator.client.protect import Aligner, ImageSource, ProtectedPhoto, protect_face
from faceobfuscator.client.sealing import seal_request
from faceobfuscator.errors import APIError, ConfigError, InputError, KeyPinError
from faceobfuscator.protocol.challenge import Challenge
from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.protocol.names import subject_name
from faceobfuscator.protocol.outcomes import Candidate, Enrolment, Identification, Verification
from faceobfuscator.protocol.payload import PAYLOAD_MEDIA_TYPE, SEALED_MEDIA_TYPE
from faceobfuscator.protocol.sealing import ServerPublicKey, pin_server_key

__all__ = [
    "APIError",
    "BatchEnrolmentError",
    "Candidate",
    "Client",
    "Enrolment",
    "Identification",
    "Verification",
]


@dataclass(frozen=True)
class FileProblem:
    """Why one photo of a batch could not be used."""

    source: str
    error: str


class BatchEnrolmentError(InputError):
    """Some photos of a batch enrolment could not be protected or enrolled; nothing of the
    batch is left enrolled. ``problems`` names each photo and its error."""

    def __init__(self, subject: str, problems: list[FileProblem], total: int) -> None:
        self.problems = problems
        listed = "; ".join(f"{p.source}: {p.error}" for p in problems)
        super().__init__(
            f"nothing enrolled for {subject!r}: {len(problems)} of {total} photos failed ({listed})"
        )


_OCTET = {"Content-Type": PAYLOAD_MEDIA_TYPE}
_SEALED = {"Content-Type": SEALED_MEDIA_TYPE}


class Client:
    """A connection to a FaceObfuscator recognition server.

    Args:
        url: the server's base URL, e.g. ``http://127.0.0.1:8000``.
        api_key: an administrator key (enrol, delete) or a client key (verify, identify).
        timeout: seconds per request.
        aligner: the face aligner; default ``FaceAligner(protocol)``.
        http: an ``httpx.Client`` to send requests with (its base URL must be the
            server's); default one of its own.
        sealed: seal payloads to the server's key: None (default) whenever the server
            offers it, True always (refuse a server without a key), False never.
        server_key_fingerprint: the SHA-256 fingerprint of the server's sealing key
            (``faceobf keys show``); a server presenting another key, or none, is refused.
        allow_key_change: accept a key other than the pinned one (after a rotation that
            was checked out of band).
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        aligner: Aligner | None = None,
        http: httpx.Client | None = None,
        sealed: bool | None = None,
        server_key_fingerprint: str | None = None,
        allow_key_change: bool = False,
    ) -> None:
        if sealed is False and server_key_fingerprint is not None:
            raise ConfigError("a pinned server key needs sealed payloads; drop sealed=False")
        self._http = http or httpx.Client(base_url=url, timeout=timeout)
        self._owns_http = http is None
        self._auth = {"Authorization": f"Bearer {api_key}"}
        self._aligner: Aligner | None = aligner
        self._protocol: ProtocolConfig | None = None
        self._created: set[str] = set()  # subjects known to exist, to skip re-creating
        self._sealed = sealed
        self._pin = server_key_fingerprint
        self._allow_key_change = allow_key_change
        self._server_key: ServerPublicKey | None = None

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_http:
            self._http.close()

    def __repr__(self) -> str:
        return f"Client({str(self._http.base_url)!r})"

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        headers = {**self._auth, **kw.pop("headers", {})}
        try:
            r = self._http.request(method, path, headers=headers, **kw)
        except httpx.HTTPError as exc:
            raise APIError(0, f"cannot reach the server: {type(exc).__name__}: {exc}") from None
        if r.status_code >= 400:
            try:
                detail = str(r.json().get("detail", r.text))
            except ValueError:
                detail = r.text[:200]
            raise APIError(r.status_code, detail)
        return r.json() if r.content else None

    # protocol and payloads

    @property
    def protocol(self) -> ProtocolConfig:
        """The server's protocol configuration (fetched once)."""
        if self._protocol is None:
            info = self._call("GET", "/v1/protocol")
            config = ProtocolConfig.from_dict(info["config"])
            if config.hash != info["config_hash"]:
                raise ConfigError(
                    "the server's protocol configuration does not match its own hash; "
                    "client and server builds disagree on the configuration format"
                )
            self._server_key = self._check_sealing(info.get("sealing"))
            self._protocol = config
        return self._protocol

    def _check_sealing(self, sealing: dict[str, Any] | None) -> ServerPublicKey | None:
        """The key to seal to, pinned; None for plain payloads."""
        if self._sealed is False:
            return None
        if sealing is None:
            if self._pin is not None or self._sealed:
                raise KeyPinError(
                    "the server publishes no sealing key, but this client requires sealed "
                    "payloads (a pinned key or sealed=True); refusing to send plain payloads"
                )
            return None
        key = ServerPublicKey.from_base64(sealing["public_key"])
        return pin_server_key(key, self._pin, allow_change=self._allow_key_change)

    @property
    def sealing_key(self) -> ServerPublicKey | None:
        """The server key payloads are sealed to; None when they are sent plain."""
        _ = self.protocol
        return self._server_key

    def challenge(self, operation: str, subject: str = "") -> Challenge:
        """A single-use challenge for one ``operation`` on ``subject``."""
        c = self._call("POST", "/v1/challenge", json={"operation": operation, "subject": subject})
        return Challenge(c["challenge"], c["operation"], c["subject"], c["expires_at"])

    def _send(
        self, operation: str, subject: str, path: str, payload: bytes, params: dict[str, Any]
    ) -> Any:
        """POST a payload: sealed for a fresh challenge when the server has a key."""
        key = self.sealing_key
        if key is None:
            return self._call("POST", path, params=params, content=payload, headers=_OCTET)
        c = self.challenge(operation, subject)
        blob = seal_request(payload, key, challenge=c, protocol=self.protocol)
        params = {**params, "challenge": c.id}
        return self._call("POST", path, params=params, content=blob, headers=_SEALED)

    def protect(self, image: ImageSource, *, select: str = "largest") -> bytes:
        """The payload of a photo (path, encoded bytes or RGB array), made locally."""
        return self.protect_face(image, select=select).payload

    def protect_face(self, image: ImageSource, *, select: str = "largest") -> ProtectedPhoto:
        """The payload of a photo and which face it was made from (``select``:
        ``"largest"``, ``"central"``, or ``"single"`` to refuse several similar faces)."""
        if self._aligner is None:
            from faceobfuscator.client.alignment import FaceAligner

            self._aligner = FaceAligner(self.protocol)
        return protect_face(image, self.protocol, aligner=self._aligner, select=select)

    # subjects (administrator key)

    def create_subject(self, subject: str) -> dict[str, Any]:
        subject = subject_name(subject)  # NFC, as the server stores it
        return self._call("POST", "/v1/subjects", json={"subject": subject})

    def get_subject(self, subject: str) -> dict[str, Any]:
        subject = subject_name(subject)  # NFC, as the server stores it
        return self._call("GET", f"/v1/subjects/{quote(subject, safe='')}")

    def list_subjects(self, *, limit: int = 100, offset: int = 0) -> dict[str, Any]:
        return self._call("GET", "/v1/subjects", params={"limit": limit, "offset": offset})

    def delete_subject(self, subject: str) -> None:
        """Erase a subject and everything enrolled for it."""
        subject = subject_name(subject)  # NFC, as the server stores it
        self._created.discard(subject)
        self._call("DELETE", f"/v1/subjects/{quote(subject, safe='')}")

    def enroll(
        self, subject: str, image: ImageSource, *, create: bool = True, select: str = "single"
    ) -> Enrolment:
        """Enrol a photo for ``subject``, creating the subject unless ``create=False``.

        By default (``select="single"``) a photo with more than one face of similar size is
        refused (:class:`MultipleFacesError`, saying how many); pass ``"largest"`` or
        ``"central"`` to choose one. The answer says which face was enrolled."""
        photo = self.protect_face(image, select=select)
        return replace(self.enroll_payload(subject, photo.payload, create=create), face=photo.face)

    def enroll_many(
        self,
        subject: str,
        images: Sequence[ImageSource],
        *,
        create: bool = True,
        select: str = "single",
    ) -> list[Enrolment]:
        """Enrol several photos of ``subject``, all or nothing.

        Every photo is protected first; if any fails, nothing is sent. If the server
        refuses one, the templates already enrolled by this call are deleted again.

        Raises:
            BatchEnrolmentError: listing each failed photo and its error.
        """
        protected: list[ProtectedPhoto] = []
        problems = []
        for image in images:
            try:
                protected.append(self.protect_face(image, select=select))
            except InputError as exc:
                problems.append(FileProblem(_label(image), str(exc)))
        if problems:
            raise BatchEnrolmentError(subject, problems, len(images))
        done: list[Enrolment] = []
        for image, photo in zip(images, protected, strict=True):
            try:
                done.append(
                    replace(
                        self.enroll_payload(subject, photo.payload, create=create),
                        face=photo.face,
                    )
                )
            except APIError as exc:
                for enrolment in done:
                    self.delete_template(subject, enrolment.template_id)
                problem = FileProblem(_label(image), str(exc))
                raise BatchEnrolmentError(subject, [problem], len(images)) from None
        return done

    def delete_template(self, subject: str, template_id: int) -> None:
        """Remove one enrolled template of ``subject``."""
        subject = subject_name(subject)  # NFC, as the server stores it
        self._call("DELETE", f"/v1/subjects/{quote(subject, safe='')}/templates/{template_id}")

    def enroll_payload(self, subject: str, payload: bytes, *, create: bool = True) -> Enrolment:
        subject = subject_name(subject)  # NFC, as the server stores it
        if create and subject not in self._created:
            try:
                self.create_subject(subject)
            except APIError as exc:
                if exc.status_code != 409:
                    raise
            self._created.add(subject)
        path = f"/v1/subjects/{quote(subject, safe='')}/templates"
        out = self._send("enroll", subject, path, payload, {})
        return Enrolment(out["subject"], out["template_id"])

    # recognition (client or administrator key)

    def verify(self, subject: str, image: ImageSource, *, select: str = "largest") -> Verification:
        """1:1: is the face in ``image`` the enrolled ``subject``? The largest face is used
        unless ``select`` says otherwise; the answer's ``face`` says which."""
        photo = self.protect_face(image, select=select)
        return replace(self.verify_payload(subject, photo.payload), face=photo.face)

    def verify_payload(self, subject: str, payload: bytes) -> Verification:
        subject = subject_name(subject)  # NFC, as the server stores it
        out = self._send("verify", subject, "/v1/verify", payload, {"subject": subject})
        return Verification(out["subject"], out["score"], out["match"], out["threshold"])

    def identify(
        self, image: ImageSource, *, top_k: int = 5, select: str = "largest"
    ) -> Identification:
        """1:N: the ``top_k`` enrolled subjects most like the face in ``image`` (the largest
        unless ``select`` says otherwise; the answer's ``face`` says which)."""
        photo = self.protect_face(image, select=select)
        return replace(self.identify_payload(photo.payload, top_k=top_k), face=photo.face)

    def identify_payload(self, payload: bytes, *, top_k: int = 5) -> Identification:
        out = self._send("identify", "", "/v1/identify", payload, {"top_k": top_k})
        return Identification(
            [Candidate(c["subject"], c["score"], c["match"]) for c in out["candidates"]],
            out["threshold"],
        )

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/v1/health")


def _label(image: ImageSource) -> str:
    """How a batch error names a photo: its path, or its kind and size."""
    if isinstance(image, bytes | bytearray):
        return f"<{len(image)} bytes>"
    shape = getattr(image, "shape", None)
    return f"<array {shape}>" if shape is not None else str(image)
