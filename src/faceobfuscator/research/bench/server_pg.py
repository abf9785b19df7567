"""End-to-end identify over one PostgreSQL with one or more API processes.

The gallery is bulk-loaded with ``COPY`` (subjects, then templates, then the sealed
embeddings, which are bound to template ids and so sealed after the ids are known): a
million rows through ``INSERT`` take many minutes. Stored payloads are 16-byte
placeholders (a million real ones are 100 GB); start-up reads only the embedding cache.
Each API process is a :class:`~faceobfuscator.server.process.LocalServer` on the same
database; the clients are spread over the processes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from faceobfuscator.server.cache import EmbeddingSealer
from faceobfuscator.server.keys import key_digest
from faceobfuscator.server.process import LocalServer
from faceobfuscator.server.storage import open_storage

__all__ = ["copy_fill_postgres", "postgres_load"]


def copy_fill_postgres(
    db_url: str,
    n: int,
    *,
    sealer: EmbeddingSealer,
    protocol_hash: str,
    per_subject: int = 10,
    seed: int = 0,
    chunk: int = 100_000,
) -> None:
    """Load ``n`` templates (``per_subject`` per subject, random unit embeddings, sealed)
    into an empty gallery at ``db_url`` with ``COPY``.

    Raises:
        ValueError: the gallery is not empty.
    """
    import psycopg

    open_storage(db_url).close()  # creates the schema
    rng = np.random.default_rng(seed)
    now = time.time()
    with psycopg.connect(db_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT COUNT(*) FROM templates")
        row = cur.fetchone()
        if row is None or row[0]:
            raise ValueError(f"{db_url} already holds templates; load into an empty gallery")
        subjects = -(-n // per_subject)
        with cur.copy("COPY subjects (name, created_at) FROM STDIN") as copy:
            for s in range(subjects):
                copy.write_row((f"synthetic-{s:07d}", now))
        cur.execute("SELECT id FROM subjects ORDER BY id")
        sids = [r[0] for r in cur.fetchall()]
        with cur.copy(
            "COPY templates (subject_id, payload, protocol_hash, created_at) FROM STDIN"
        ) as copy:
            for t in range(n):
                copy.write_row((sids[t // per_subject], b"\0" * 16, protocol_hash, now))
        cur.execute("SELECT id FROM templates ORDER BY id")
        tids = [r[0] for r in cur.fetchall()]
        with cur.copy("COPY embedding_cache (template_id, model_hash, sealed) FROM STDIN") as copy:
            for start in range(0, n, chunk):
                emb = rng.standard_normal((min(chunk, n - start), sealer.dim), np.float32)
                emb /= np.linalg.norm(emb, axis=1, keepdims=True)
                for tid, e in zip(tids[start : start + len(emb)], emb, strict=True):
                    copy.write_row((tid, sealer.model_hash, sealer.seal(tid, e)))
        conn.commit()
        cur.execute("ANALYZE")


def postgres_load(
    db_url: str,
    model_dir: str | Path,
    *,
    admin: str,
    cache_key: str,
    pool: list[bytes],
    processes: tuple[int, ...] = (1, 2),
    clients: int = 4,
    duration_s: float = 30.0,
    server_env: dict[str, str] | None = None,
    workdir: Path,
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """For each number of ``processes``: start that many API processes on ``db_url``
    (timing their start-up) and measure ``clients`` identifying for ``duration_s``."""
    from faceobfuscator.research.bench.server import load_bench

    say = progress or (lambda _msg: None)
    env = {
        "FACEOBF_ADMIN_KEY_HASHES": json.dumps([key_digest(admin)]),
        "FACEOBF_CACHE_KEY": cache_key,
        **(server_env or {}),
    }
    rows = []
    for count in processes:
        servers = [
            LocalServer(
                model=model_dir, db_url=db_url, log=workdir / f"pg-{count}-{i}.log", env=env
            )
            for i in range(count)
        ]
        try:
            t = time.monotonic()
            healths = [s.start(timeout=900) for s in servers]
            startup_s = time.monotonic() - t
            say(f"{clients} clients over {count} API process(es) for {duration_s:.0f} s")
            result = load_bench(
                [s.url for s in servers],
                admin,
                pool,
                [],
                clients=clients,
                duration_s=duration_s,
                enrol_share=0.0,
                server_pids=[s.proc.pid for s in servers if s.proc],
            )
        finally:
            for s in servers:
                s.stop()
        rows.append(
            {
                "processes": count,
                "index": healths[0].get("index"),
                "indexed_at_start": healths[0]["templates_indexed"],
                "startup_s_all_processes": round(startup_s, 1),
                "server_env": server_env or {},
                **result,
            }
        )
    return rows
