"""The client SDK: :class:`Client` talks to a recognition server.

Detection, alignment, the frequency transform and obfuscation run locally
(:func:`faceobfuscator.client.protect_image`); only the payload is sent, as the raw body of
an ``application/octet-stream`` request. The protocol comes from the server's
``/v1/protocol`` and is checked against its hash before any payload is made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from .client import Aligner, ImageSource, protect_image
from .config import ProtocolConfig
from .errors import ConfigError, FaceObfuscatorError

__all__ = ["Client", "APIError", "Enrolment", "Verification", "Candidate", "Identification"]

_OCTET = {"Content-Type": "application/octet-stream"}


class APIError(FaceObfuscatorError):
    """The server refused a request.

    Attributes:
        status_code: the HTTP status.
        detail: the server's message.
    """

    def __init__(self, status_code: int, detail: str) -> None:
        super().__init__(f"server answered {status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail


@dataclass(frozen=True)
class Enrolment:
    subject: str
    template_id: int


@dataclass(frozen=True)
class Verification:
    subject: str
    score: float
    match: bool
    threshold: float


@dataclass(frozen=True)
class Candidate:
    subject: str
    score: float
    match: bool


@dataclass(frozen=True)
class Identification:
    candidates: list[Candidate]
    match: str | None
    threshold: float


class Client:
    """A connection to a FaceObfuscator recognition server.

    Args:
        url: the server's base URL, e.g. ``http://127.0.0.1:8000``.
        api_key: an administrator key (enrol, delete) or a client key (verify, identify).
        timeout: seconds per request.
        aligner: the face aligner; default ``FaceAligner(protocol)``.
        http: an ``httpx.Client`` to send requests with (its base URL must be the
            server's); default one of its own.
    """

    def __init__(
        self,
        url: str,
        api_key: str,
        *,
        timeout: float = 30.0,
        aligner: Aligner | None = None,
        http: httpx.Client | None = None,
    ) -> None:
        self._http = http or httpx.Client(base_url=url, timeout=timeout)
        self._owns_http = http is None
        self._auth = {"Authorization": f"Bearer {api_key}"}
        self._aligner: Aligner | None = aligner
        self._protocol: ProtocolConfig | None = None
        self._created: set[str] = set()  # subjects known to exist, to skip re-creating

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
            self._protocol = config
        return self._protocol

    def protect(self, image: ImageSource) -> bytes:
        """The payload of a photo (path, encoded bytes or RGB array), made locally."""
        if self._aligner is None:
            from .alignment import FaceAligner

            self._aligner = FaceAligner(self.protocol)
        return protect_image(image, self.protocol, aligner=self._aligner)

    # subjects (administrator key)

    def create_subject(self, subject: str) -> dict[str, Any]:
        return self._call("POST", "/v1/subjects", json={"subject": subject})

    def get_subject(self, subject: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/subjects/{quote(subject, safe='')}")

    def list_subjects(self, *, limit: int = 100, offset: int = 0) -> dict[str, Any]:
        return self._call("GET", "/v1/subjects", params={"limit": limit, "offset": offset})

    def delete_subject(self, subject: str) -> None:
        """Erase a subject and everything enrolled for it."""
        self._created.discard(subject)
        self._call("DELETE", f"/v1/subjects/{quote(subject, safe='')}")

    def enroll(self, subject: str, image: ImageSource, *, create: bool = True) -> Enrolment:
        """Enrol a photo for ``subject``, creating the subject unless ``create=False``."""
        return self.enroll_payload(subject, self.protect(image), create=create)

    def enroll_payload(self, subject: str, payload: bytes, *, create: bool = True) -> Enrolment:
        if create and subject not in self._created:
            try:
                self.create_subject(subject)
            except APIError as exc:
                if exc.status_code != 409:
                    raise
            self._created.add(subject)
        out = self._call(
            "POST",
            f"/v1/subjects/{quote(subject, safe='')}/templates",
            content=payload,
            headers=_OCTET,
        )
        return Enrolment(out["subject"], out["template_id"])

    # recognition (client or administrator key)

    def verify(self, subject: str, image: ImageSource) -> Verification:
        """1:1: is the face in ``image`` the enrolled ``subject``?"""
        return self.verify_payload(subject, self.protect(image))

    def verify_payload(self, subject: str, payload: bytes) -> Verification:
        out = self._call(
            "POST", "/v1/verify", params={"subject": subject}, content=payload, headers=_OCTET
        )
        return Verification(out["subject"], out["score"], out["match"], out["threshold"])

    def identify(self, image: ImageSource, *, top_k: int = 5) -> Identification:
        """1:N: the ``top_k`` enrolled subjects most like the face in ``image``."""
        return self.identify_payload(self.protect(image), top_k=top_k)

    def identify_payload(self, payload: bytes, *, top_k: int = 5) -> Identification:
        out = self._call(
            "POST", "/v1/identify", params={"top_k": top_k}, content=payload, headers=_OCTET
        )
        return Identification(
            [Candidate(c["subject"], c["score"], c["match"]) for c in out["candidates"]],
            out["match"],
            out["threshold"],
        )

    def health(self) -> dict[str, Any]:
        return self._call("GET", "/v1/health")
