"""Start-up of a large gallery from the encrypted embedding cache: the server's own
``GalleryService.start`` over SQLite, the model never run.

Stored payloads are 16-byte placeholders (a million real ones are 100 GB): start-up never
reads a payload whose embedding is cached, but SQLite then reads fewer pages than it would
over real rows, so the figure is a lower bound on the database side; decrypting the cache
and building the index are measured in full.
"""

from __future__ import annotations

import os
import secrets
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from faceobfuscator.protocol.config import ProtocolConfig
from faceobfuscator.research.bench.server import fill_gallery
from faceobfuscator.server.ann import choose_index
from faceobfuscator.server.cache import EmbeddingSealer
from faceobfuscator.server.service import GalleryService
from faceobfuscator.server.storage import open_storage

__all__ = ["startup_bench"]


class _CacheOnly:
    """An embedder for a gallery whose every embedding is cached: never called."""

    name = "cache-only"
    threshold = 0.5

    def __init__(self, dim: int) -> None:
        self.protocol = ProtocolConfig()
        self.dim = dim
        self.model_hash = secrets.token_hex(32)

    def embed(self, features: np.ndarray) -> np.ndarray:
        raise AssertionError("start-up ran the model: an embedding was missing from the cache")


def startup_bench(
    n: int = 1_000_000,
    *,
    dim: int = 128,
    kind: str = "auto",
    workdir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Fill a SQLite gallery of ``n`` templates with sealed embeddings, then time one
    service's start-up (cache read, decryption, index build)."""
    say = progress or (lambda _msg: None)
    embedder = _CacheOnly(dim)
    sealer = EmbeddingSealer(secrets.token_bytes(32), model_hash=embedder.model_hash, dim=dim)
    with tempfile.TemporaryDirectory(dir=workdir, prefix="faceobf-startup-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'gallery.db'}"
        say(f"filling {n:,} templates with sealed {dim}-d embeddings")
        t = time.perf_counter()
        fill_gallery(
            url, n, [b"\0" * 16], sealer=sealer, protocol_hash=embedder.protocol.hash, batch=5000
        )
        fill_s = time.perf_counter() - t
        db_bytes = sum(p.stat().st_size for p in Path(tmp).glob("gallery.db*"))
        say("starting the service")
        service = GalleryService(
            open_storage(url),
            embedder,
            sealer=sealer,
            index_factory=lambda count: choose_index(dim, count, kind=kind),
        )
        t = time.perf_counter()
        service.start()
        startup_s = time.perf_counter() - t
        try:
            indexed, index_kind = len(service.index), service.index.kind
        finally:
            service.close()
    return {
        "templates": n,
        "dim": dim,
        "index": index_kind,
        "indexed": indexed,
        "fill_s": round(fill_s, 1),
        "startup_s": round(startup_s, 3),
        "db_bytes_per_template": round(db_bytes / n, 1),
        "sealed_embedding_bytes": len(sealer.seal(1, np.zeros(dim, np.float32))),
        "cpus": os.cpu_count(),
        "note": "16-byte placeholder payloads; real ones are 100,404 bytes",
    }
