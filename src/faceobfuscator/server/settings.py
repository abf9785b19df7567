"""Server settings: read once at the entry point (CLI or app factory), frozen, passed down.

Every field can come from the environment (``FACEOBF_<NAME>``, e.g. ``FACEOBF_DB_URL``), from
a dotenv file (:meth:`ServerSettings.load`, ``faceobf serve --env-file``) or from keyword
arguments, in that order of increasing precedence. List fields take JSON in the environment:
``FACEOBF_ADMIN_KEY_HASHES='["3f1c..."]'``.
"""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from faceobfuscator.server.security.envelope import MasterKey, MasterKeyring

__all__ = ["ServerSettings", "SETTINGS_FILE_ENV"]

#: Environment variable naming a dotenv file of settings; how ``faceobf serve`` hands its
#: settings to uvicorn worker processes.
SETTINGS_FILE_ENV = "FACEOBF_SETTINGS_FILE"

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class ServerSettings(BaseSettings):
    """Settings of one API process.

    Attributes:
        model_dir: the recognition model directory (weights and ``config.json``).
        db_url: ``sqlite:///path/to/gallery.db`` (embedded, WAL) or
            ``postgresql://user@host:port/db`` (shared by several API processes).
        device: torch device of the model.
        threshold: overrides the model's calibrated cosine threshold (required for a model
            without one).
        admin_key_hashes: SHA-256 hex digests of the administrator API keys
            (``faceobf apikey`` makes a key and its digest). Administrators create and
            delete subjects and enrol templates, and may also verify and identify.
        client_key_hashes: digests of client keys, which may only verify and identify.
        max_payload_bytes: largest accepted request body; default the protocol's exact
            payload size.
        cache_key: base64url 32-byte key; set it to keep an AES-GCM-encrypted embedding
            cache in the database, so that start-up need not run the model on every
            template. Without it embeddings live only in memory.
        sync_interval_s: how often each process polls the change log for enrolments and
            deletions made by other processes (it also catches up before every request
            that reads the index).
        sqlite_synchronous: ``FULL`` makes every acknowledged write survive power loss,
            ``NORMAL`` only a process crash.
        pg_pool_size: PostgreSQL connections per process.
        embed_batch: templates per model call when building the index at start-up, and
            payloads per call at most when requests are batched.
        runtime: ``fp32`` (the network as trained, the reference), ``bf16`` (the SFace
            body in bfloat16: embeddings within 1e-3 cosine of fp32, faster on CPUs with
            native bfloat16; see ``server.runtime``) or ``bf16-compiled`` (the same network
            compiled by ``torch.compile`` at start-up: needs a C++ compiler, adds a minute
            or two to start-up, then about 40% less CPU a payload).
        batch_window_ms: requests arriving within this many milliseconds share one
            network call (micro-batching); 0 turns it off.
        network_lanes: how many network calls may run at once in this process
            (concurrent requests' batches); 1 runs them one after another.
        torch_threads: torch's intra-op threads in this process; 0 leaves torch's default
            (one per core). On a small CPU, ``network_lanes`` = cores with
            ``torch_threads`` = 1 spends less CPU a request than one call on every core
            (measured in the README's Speed section).
        rebuild_background_from: when start-up finds at least this many templates
            without a cached embedding of the model (a changed model), the server answers
            at once and embeds them in the background, with progress and
            ``index_complete`` in ``/v1/health``; fewer are embedded before it answers.
        max_top_k: the largest ``top_k`` that identify accepts.
        sealing_key_file: the server's sealing key (``faceobf keys new-server``, mode 0600).
            With it, ``/v1/protocol`` publishes the public key, ``/v1/challenge`` issues
            single-use challenges, and enrol, verify and identify accept payloads sealed to
            the key and bound to a challenge. Plain payloads offer no replay protection.
        require_sealed: refuse plain payloads (needs ``sealing_key_file``).
        challenge_ttl_s: how long a challenge stays good.
        master_key: base64 32-byte key (``faceobf keys new-master``); set it to store
            templates encrypted (envelope encryption, see ``faceobfuscator.server.security``).
        previous_master_keys: keys still accepted for reading while ``faceobf keys rotate``
            moves the gallery to ``master_key``; remove them when it has finished.
        index: ``exact`` (float32, every template scored), ``pq`` (every template scored
            on 4-bit product-quantisation codes, the best ``ann_shortlist`` re-scored on
            float16: approximate, fast at millions of templates), ``ivf`` (faiss inverted
            file over 8-bit codes: faster still, but misses similar strangers; see
            docs/scaling.md) or ``auto`` (``pq`` when the gallery holds
            ``ann_min_templates`` or more at start-up).
        ann_min_templates: where ``auto`` switches to the approximate index.
        ann_nlist: cells of the approximate index; default about ``sqrt(templates)``.
        ann_nprobe: cells scored per search (recall against speed; see docs/scaling.md).
        ann_shortlist: rows of the ``pq`` code scan re-scored on float16 (recall of
            places 2-5 against speed).
        ann_train_size: templates gathered (searched exactly) before the approximate
            index trains; default 40 per IVF cell, 20,000 for ``pq``.
        client_rate_per_s: requests per second allowed to each client key (a token
            bucket of ``rate_burst``); beyond it the answer is 429 with ``Retry-After``.
            None: unlimited.
        admin_rate_per_s: the same for administrator keys.
        rate_burst: requests a key may send at once before its rate applies.
        change_log_prune_s: how often each process reports its position in the change
            log and prunes what every process has applied.
        change_log_keep_s: a process not heard from for this long no longer holds the log
            back; if it returns behind the pruned log, it reloads its index.
        client_scores: return similarity scores to client keys. Off, verify and identify
            answer client keys with decisions only (scores let a key holder hill-climb an
            image towards a face); administrators still see scores.
    """

    # hide_input_in_errors: a malformed key must not be echoed into logs
    model_config = SettingsConfigDict(
        env_prefix="FACEOBF_", frozen=True, extra="ignore", hide_input_in_errors=True
    )

    model_dir: Path
    db_url: str = "sqlite:///gallery.db"
    device: str = "cpu"
    threshold: float | None = None
    admin_key_hashes: tuple[str, ...] = ()
    client_key_hashes: tuple[str, ...] = ()
    max_payload_bytes: int | None = Field(default=None, gt=0)
    cache_key: SecretStr | None = None
    sync_interval_s: float = Field(default=1.0, gt=0)
    sqlite_synchronous: Literal["FULL", "NORMAL"] = "FULL"
    pg_pool_size: int = Field(default=4, ge=1, le=64)
    embed_batch: int = Field(default=32, ge=1, le=1024)
    runtime: Literal["fp32", "bf16", "bf16-compiled"] = "fp32"
    batch_window_ms: float = Field(default=0.0, ge=0, le=100)
    network_lanes: int = Field(default=1, ge=1, le=64)
    torch_threads: int = Field(default=0, ge=0, le=256)
    rebuild_background_from: int = Field(default=10_000, ge=1)
    max_top_k: int = Field(default=100, ge=1)
    sealing_key_file: Path | None = None
    require_sealed: bool = False
    challenge_ttl_s: float = Field(default=120.0, gt=0, le=3600)
    master_key: SecretStr | None = None
    previous_master_keys: tuple[SecretStr, ...] = ()
    index: Literal["auto", "exact", "ivf", "pq"] = "auto"
    ann_min_templates: int = Field(default=50_000, ge=1)
    ann_nlist: int | None = Field(default=None, ge=1, le=65536)
    ann_nprobe: int = Field(default=32, ge=1)
    ann_shortlist: int = Field(default=300, ge=1, le=100_000)
    ann_train_size: int | None = Field(default=None, ge=1)
    client_rate_per_s: float | None = Field(default=None, gt=0)
    admin_rate_per_s: float | None = Field(default=None, gt=0)
    rate_burst: int = Field(default=20, ge=1)
    client_scores: bool = True
    change_log_prune_s: float = Field(default=60.0, gt=0)
    change_log_keep_s: float = Field(default=600.0, gt=0)

    @field_validator("admin_key_hashes", "client_key_hashes")
    @classmethod
    def _hex_digests(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [i for i, h in enumerate(value) if not _HEX64.match(h)]
        if bad:
            raise ValueError(
                f"entries {bad} are not SHA-256 hex digests (64 lowercase hex characters); "
                "store the digest of a key, never the key (faceobf apikey prints both)"
            )
        return value

    @field_validator("db_url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError(
                "db_url must start with sqlite:/// (a file path follows) or postgresql://"
            )
        if value.startswith("sqlite:///") and value[len("sqlite:///") :] in ("", ":memory:"):
            raise ValueError("db_url needs a file path: sqlite:///path/to/gallery.db")
        return value

    @field_validator("cache_key")
    @classmethod
    def _key_bytes(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(_decode_key(value.get_secret_value())) != 32:
            raise ValueError("cache_key must be 32 bytes in base64url (faceobf apikey --cache)")
        return value

    @field_validator("master_key")
    @classmethod
    def _master_key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            MasterKey.from_base64(value.get_secret_value())  # raises a ValueError
        return value

    @field_validator("previous_master_keys")
    @classmethod
    def _previous_master_keys(cls, value: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        for key in value:
            MasterKey.from_base64(key.get_secret_value())
        return value

    @model_validator(mode="after")
    def _sealing_required_needs_a_key(self) -> ServerSettings:
        if self.require_sealed and self.sealing_key_file is None:
            raise ValueError("require_sealed needs sealing_key_file (faceobf keys new-server)")
        return self

    def master_keyring(self) -> MasterKeyring | None:
        """The template encryption keys, or None when templates are stored in plain."""
        if self.master_key is None:
            return None
        return MasterKeyring(
            MasterKey.from_base64(self.master_key.get_secret_value()),
            previous=[
                MasterKey.from_base64(k.get_secret_value()) for k in self.previous_master_keys
            ],
        )

    def cache_key_bytes(self) -> bytes | None:
        """The embedding-cache key as bytes, or None when the cache is off."""
        if self.cache_key is None:
            return None
        return _decode_key(self.cache_key.get_secret_value())

    @classmethod
    def load(cls, env_file: str | Path | None = None, **overrides: Any) -> ServerSettings:
        """Settings from ``overrides``, the environment and ``env_file`` (default: the file
        named by ``FACEOBF_SETTINGS_FILE``, if any)."""
        path = env_file if env_file is not None else os.environ.get(SETTINGS_FILE_ENV)
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"settings file {path} does not exist")
        return cls(_env_file=path, **overrides)  # type: ignore[call-arg]


def _decode_key(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except ValueError:
        return b""
