"""Server benchmarks: concurrent clients on loopback against galleries of given sizes, and
exact 1:N search over a large embedding matrix.

Galleries are filled straight into SQLite with synthetic but valid payloads of the real
size and random unit embeddings sealed into the encrypted cache, so that start-up reads the
cache instead of running the model on every template. Each request still runs the model on
its own payload.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import numpy as np

from faceobfuscator.protocol.config import DEFAULT_IMAGE_SIZE, ProtocolConfig
from faceobfuscator.protocol.payload import PAYLOAD_MEDIA_TYPE
from faceobfuscator.research.bench.timing import latency_summary
from faceobfuscator.server.cache import EmbeddingSealer
from faceobfuscator.server.index import EmbeddingIndex
from faceobfuscator.server.keys import key_digest, new_api_key, new_cache_key
from faceobfuscator.server.process import LocalServer
from faceobfuscator.server.storage import open_storage

__all__ = ["run_server_bench", "search_bench", "load_bench"]

_OCTET = {"Content-Type": PAYLOAD_MEDIA_TYPE}


def _unit_rows(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def synthetic_payloads(n: int, config: ProtocolConfig, *, seed: int = 0) -> list[bytes]:
    """``n`` valid payloads of random smooth images (not faces), each its own draw."""
    import torch

    from faceobfuscator.protocol.features import protect_faces
    from faceobfuscator.protocol.payload import encode_payload

    rng = np.random.default_rng(seed)
    coarse = rng.uniform(0, 255, (n, 14, 14, 3))
    imgs = np.kron(coarse, np.ones((8, 8, 1))) + rng.normal(
        0, 8, (n, DEFAULT_IMAGE_SIZE, DEFAULT_IMAGE_SIZE, 3)
    )
    faces = np.clip(imgs, 0, 255).astype(np.uint8)
    g = torch.Generator().manual_seed(seed)
    return [encode_payload(f, config) for f in protect_faces(faces, config, generator=g).numpy()]


def _sealing(sealer: EmbeddingSealer, rows: Iterator[np.ndarray]) -> Callable[[int], bytes]:
    """Seals the next of ``rows`` for each template id it is called with."""
    return lambda tid: sealer.seal(tid, next(rows))


def fill_gallery(
    db_url: str,
    n: int,
    pool: list[bytes],
    *,
    sealer: EmbeddingSealer,
    protocol_hash: str,
    per_subject: int = 10,
    seed: int = 0,
    batch: int = 2000,
) -> None:
    """Insert ``n`` templates (``per_subject`` per subject, payloads cycled from ``pool``)
    with random sealed embeddings, bypassing the API."""
    rng = np.random.default_rng(seed)
    storage = open_storage(db_url, synchronous="NORMAL")
    try:
        for start in range(0, n, batch):
            count = min(batch, n - start)
            emb = _unit_rows(rng, count, sealer.dim)
            items = [
                (f"synthetic-{(start + i) // per_subject:07d}", pool[(start + i) % len(pool)])
                for i in range(count)
            ]
            storage.add_templates(
                items,
                protocol_hash=protocol_hash,
                seal=_sealing(sealer, iter(emb)),
                model_hash=sealer.model_hash,
                create_subjects=True,
            )
    finally:
        storage.close()


def load_bench(
    url: str | list[str],
    api_key: str,
    pool: list[bytes],
    subjects: list[str],
    *,
    clients: int,
    duration_s: float,
    enrol_share: float,
    seed: int = 0,
    server_pids: list[int] | None = None,
) -> dict[str, Any]:
    """``clients`` threads sending identify and enrol requests for ``duration_s``; given
    several server URLs, client ``w`` talks to ``url[w % len(url)]``. With
    ``server_pids``, also the servers' CPU time per request (on a shared machine latency
    includes waiting for a core; CPU time does not)."""
    urls = [url] if isinstance(url, str) else url
    lat: dict[str, list[float]] = {"identify": [], "enrol": []}
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + duration_s

    def client(worker: int) -> None:
        # the standard library's keep-alive connection: the load generator shares the
        # machine's cores with the server, and http.client spends less CPU a request than
        # httpx (the bench reports the generator's own CPU time beside the server's)
        rng = np.random.default_rng(seed + worker)
        headers = {"Authorization": f"Bearer {api_key}", **_OCTET}
        base = urlsplit(urls[worker % len(urls)])
        conn = http.client.HTTPConnection(base.hostname or "127.0.0.1", base.port, timeout=120)
        try:
            while time.monotonic() < deadline:
                payload = pool[int(rng.integers(len(pool)))]
                enrol = rng.random() < enrol_share
                t = time.perf_counter()
                try:
                    if enrol:
                        name = quote(subjects[int(rng.integers(len(subjects)))], safe="")
                        conn.request("POST", f"/v1/subjects/{name}/templates", payload, headers)
                    else:
                        conn.request("POST", "/v1/identify?top_k=5", payload, headers)
                    r = conn.getresponse()
                    r.read()
                    ok = r.status < 400
                    why = f"{r.status}"
                except (OSError, http.client.HTTPException) as exc:
                    ok, why = False, type(exc).__name__
                    conn.close()  # reconnects on the next request
                ms = 1000 * (time.perf_counter() - t)
                with lock:
                    if ok:
                        lat["enrol" if enrol else "identify"].append(ms)
                    else:
                        errors.append(why)
        finally:
            conn.close()

    cpu0 = sum(_cpu_s(p) for p in server_pids or [])
    own0 = time.process_time()
    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(w,)) for w in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.monotonic() - started
    own = time.process_time() - own0
    cpu = sum(_cpu_s(p) for p in server_pids or []) - cpu0
    total = len(lat["identify"]) + len(lat["enrol"]) + len(errors)
    return {
        "clients": clients,
        "duration_s": round(elapsed, 2),
        "requests": total,
        "requests_per_s": round(total / elapsed, 2),
        "errors": len(errors),
        "error_kinds": sorted(set(errors)),
        "identify": latency_summary(lat["identify"]),
        "enrol": latency_summary(lat["enrol"]),
        "server_cpu_ms_per_request": round(1000 * cpu / max(total, 1), 1) if server_pids else None,
        "load_generator_cpu_ms_per_request": round(1000 * own / max(total, 1), 1),
    }


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) of process ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def search_bench(
    n: int = 1_000_000, *, dim: int = 512, queries: int = 20, k: int = 5, seed: int = 0
) -> dict[str, Any]:
    """Exact 1:N search of single probes against ``n`` random unit embeddings: float32
    matrix-vector product and ``argpartition``; also the server's index (best template
    per subject, 10 templates per subject) and a batch of 32 probes."""
    rng = np.random.default_rng(seed)
    gallery = _unit_rows(rng, n, dim)
    probes = _unit_rows(rng, max(queries, 32), dim)

    def top(matrix: np.ndarray, q: np.ndarray) -> np.ndarray:
        s = matrix @ q
        idx = np.argpartition(s, n - k)[n - k :]
        return idx[np.argsort(-s[idx])]

    top(gallery, probes[0])  # warm-up
    times = []
    for q in probes[:queries]:
        t = time.perf_counter()
        top(gallery, q)
        times.append(1000 * (time.perf_counter() - t))
    t = time.perf_counter()
    scores = gallery @ probes[:32].T
    np.argpartition(scores, n - k, axis=0)
    batched = 1000 * (time.perf_counter() - t) / 32

    index = EmbeddingIndex(dim)
    step = 100_000
    for s in range(0, n, step):
        ids = list(range(s, min(n, s + step)))
        index.add(ids, [i // 10 for i in ids], [f"s{i // 10}" for i in ids], gallery[s : s + step])
    del gallery
    index_times = []
    for q in probes[:queries]:
        t = time.perf_counter()
        index.search(q, k)
        index_times.append(1000 * (time.perf_counter() - t))
    return {
        "embeddings": n,
        "dim": dim,
        "k": k,
        "numpy_ms_per_query_median": round(statistics.median(times), 2),
        "numpy_ms_per_query_p99": round(float(np.percentile(times, 99)), 2),
        "numpy_batch32_ms_per_query": round(batched, 2),
        "index_search_ms_per_query_median": round(statistics.median(index_times), 2),
    }


def run_server_bench(
    *,
    model_dir: str | Path | None = None,
    sizes: tuple[int, ...] = (1000, 100_000),
    clients: int = 4,
    processes: int = 1,
    duration_s: float = 15.0,
    enrol_share: float = 0.2,
    search_size: int = 1_000_000,
    ann_sizes: tuple[int, ...] = (),
    ann_dims: tuple[int, ...] = (128, 512),
    ann_spectra: tuple[float, ...] = (0.0, 1.0),
    ann_nprobes: tuple[int, ...] = (16, 32, 64),
    ann_kinds: tuple[str, ...] = ("pq",),
    ann_shortlists: tuple[int, ...] = (100, 300, 1000),
    ann_fit: tuple[str | Path, ...] | None = None,
    ann_per_subject: int = 5,
    ann_queries: int = 300,
    startup_sizes: tuple[int, ...] = (),
    placeholder_from: int = 500_000,
    server_env: dict[str, str] | None = None,
    runtime_bench_payloads: int = 0,
    pg_url: str | None = None,
    pg_size: int = 1_000_000,
    pg_processes: tuple[int, ...] = (1, 2),
    workdir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Run the server benchmark; returns the JSON-ready results.

    Args:
        model_dir: the served model; default a random (untrained) model of the same size
            as the trained one would be, made in the work folder.
        sizes: gallery sizes (templates), each a fresh SQLite gallery.
        clients: concurrent client threads.
        processes: API processes on each SQLite gallery (client ``w`` talks to process
            ``w % processes``); started one after another, start-up timed for all.
        duration_s: seconds of load per gallery.
        enrol_share: fraction of requests that enrol (the rest identify).
        search_size: embeddings of the 1:N search benchmark (0 skips it).
        ann_sizes: templates of the approximate-against-exact search rows
            (``research.bench.ann``), each at every one of ``ann_dims`` and ``ann_spectra``.
        ann_nprobes: cells probed, one row each (``ivf``).
        ann_kinds: approximate stores measured (``pq``, ``ivf``).
        ann_shortlists: rows re-scored on float16, one row each (``pq``).
        ann_fit: embeddings (``.npy``) and their pack (``.npz`` with ``paths``) to fit
            the realistic gallery to (``research.bench.ann.load_face_model``), or one
            training pack holding SFace teacher embeddings and labels
            (``load_face_model_from_pack``); its rows come before the ``ann_spectra`` ones.
        ann_per_subject: templates per synthetic subject.
        ann_queries: probes of each approximate row (recall and latency); the exact
            reference scans the gallery once for all of them.
        placeholder_from: galleries this large store 16-byte placeholder payloads (their
            embeddings are cached, so only enrolments during the run read real ones).
        startup_sizes: templates of the start-up from the embedding cache rows
            (``research.bench.startup``), at each of ``ann_dims``.
        server_env: extra ``FACEOBF_*`` settings of the served process (runtime, batch
            window, index).
        runtime_bench_payloads: compare the embedding runtimes on this many synthetic
            payloads (``research.bench.runtime``); 0 skips it.
        pg_url: an empty PostgreSQL database: ``pg_size`` templates are bulk-loaded into
            it and identified end to end through each of ``pg_processes`` API processes
            (``research.bench.server_pg``).
        workdir: where galleries go (each deleted afterwards); default a temporary folder.
    """
    say = progress or (lambda _msg: None)
    with tempfile.TemporaryDirectory(dir=workdir, prefix="faceobf-bench-") as tmp:
        root = Path(tmp)
        if model_dir is None:
            from faceobfuscator.recognition.modeldir import make_random_model

            model_dir = make_random_model(root / "random-model")
        from faceobfuscator.server.embedder import ModelEmbedder

        model = ModelEmbedder(model_dir)
        admin = new_api_key()
        cache_key = new_cache_key()
        key = base64.urlsafe_b64decode(cache_key + "=" * (-len(cache_key) % 4))
        sealer = EmbeddingSealer(key, model_hash=model.model_hash, dim=model.dim)
        pool = synthetic_payloads(32, model.protocol)
        out: dict[str, Any] = {
            "model": model.name,
            "cpus": os.cpu_count(),
            "payload_bytes": len(pool[0]),
            "galleries": [],
        }
        for n in sizes:
            db = root / f"gallery-{n}.db"
            say(f"filling a gallery of {n:,} templates")
            t = time.monotonic()
            # a million real payloads are 100 GB; start-up reads only the embedding cache
            stored = pool if n < placeholder_from else [b"\0" * 16]
            fill_gallery(
                f"sqlite:///{db}", n, stored, sealer=sealer, protocol_hash=model.protocol.hash
            )
            fill_s = time.monotonic() - t
            env = {
                "FACEOBF_ADMIN_KEY_HASHES": json.dumps([key_digest(admin)]),
                "FACEOBF_CACHE_KEY": cache_key,
                **(server_env or {}),
            }
            servers = [
                LocalServer(
                    model=model_dir,
                    db_url=f"sqlite:///{db}",
                    log=root / f"server-{n}-{i}.log",
                    env=env,
                )
                for i in range(processes)
            ]
            t = time.monotonic()
            try:
                health = [s.start(timeout=600) for s in servers][0]
                startup_s = time.monotonic() - t
                say(
                    f"{clients} clients over {processes} API process(es) for "
                    f"{duration_s:.0f} s against {n:,} templates"
                )
                subjects = [f"synthetic-{i:07d}" for i in range(min(100, max(1, n // 10)))]
                result = load_bench(
                    [s.url for s in servers],
                    admin,
                    pool,
                    subjects,
                    clients=clients,
                    duration_s=duration_s,
                    enrol_share=enrol_share,
                    server_pids=[s.proc.pid for s in servers if s.proc],
                )
            finally:
                for s in servers:
                    s.stop()
            out["galleries"].append(
                {
                    "templates": n,
                    "processes": processes,
                    "stored_payloads": "real" if stored is pool else "16-byte placeholders",
                    "index": health.get("index", "exact"),
                    "indexed_at_start": health["templates_indexed"],
                    "fill_s": round(fill_s, 1),
                    "startup_s": round(startup_s, 1),
                    "server_env": server_env or {},
                    "db_mib": round(
                        sum(p.stat().st_size for p in root.glob(f"gallery-{n}.db*")) / 2**20
                    ),
                    **result,
                }
            )
            for p in root.glob(f"gallery-{n}.db*"):
                p.unlink()
        if runtime_bench_payloads:
            from faceobfuscator.research.bench.runtime import runtime_bench

            say("embedding runtimes")
            out["runtimes"] = runtime_bench(
                model_dir, synthetic_payloads(runtime_bench_payloads, model.protocol, seed=1)
            )
        if pg_url:
            from faceobfuscator.research.bench.server_pg import copy_fill_postgres, postgres_load

            say(f"COPY of {pg_size:,} templates into PostgreSQL")
            t = time.monotonic()
            copy_fill_postgres(pg_url, pg_size, sealer=sealer, protocol_hash=model.protocol.hash)
            out["postgres"] = {
                "templates": pg_size,
                "copy_fill_s": round(time.monotonic() - t, 1),
                "runs": postgres_load(
                    pg_url,
                    model_dir,
                    admin=admin,
                    cache_key=cache_key,
                    pool=pool,
                    processes=pg_processes,
                    clients=clients,
                    duration_s=duration_s,
                    server_env=server_env,
                    workdir=root,
                    progress=say,
                ),
            }
        if search_size:
            say(f"1:N search against {search_size:,} embeddings")
            out["search"] = search_bench(search_size, dim=model.dim)
        if ann_sizes:
            from faceobfuscator.research.bench.ann import (
                ann_bench,
                load_face_model,
                load_face_model_from_pack,
            )

            if ann_fit is None:
                fitted = None
            elif len(ann_fit) == 1:
                fitted = load_face_model_from_pack(ann_fit[0])
            else:
                fitted = load_face_model(*ann_fit)
            galleries = ([(fitted, 0.0)] if fitted is not None else []) + [
                (None, a) for a in ann_spectra
            ]
            out["ann"] = [
                ann_bench(
                    n,
                    dim=d,
                    kind=kind,
                    knobs=ann_nprobes if kind == "ivf" else ann_shortlists,
                    per_subject=ann_per_subject,
                    queries=ann_queries,
                    model=model,
                    spectrum=spectrum,
                    progress=say,
                )
                for n in ann_sizes
                for d in ann_dims
                for model, spectrum in galleries
                if model is None or model.mean.shape[0] == d
                for kind in ann_kinds
            ]
        if startup_sizes:
            from faceobfuscator.research.bench.startup import startup_bench

            out["startup"] = [
                startup_bench(n, dim=d, workdir=workdir, progress=say)
                for n in startup_sizes
                for d in ann_dims
            ]
        return out
