"""SIGKILL in the middle of a burst of enrolments: after a restart every acknowledged
enrolment is present, and no enrolment is half-stored."""

from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import threading
import time

import httpx
import numpy as np

from faceobfuscator import ProtocolConfig, decode_payload
from faceobfuscator.recognition.modeldir import make_random_model
from faceobfuscator.server.cache import EmbeddingSealer
from faceobfuscator.server.embedder import model_hash
from faceobfuscator.server.keys import new_cache_key
from faceobfuscator.server.settings import ServerSettings
from faceobfuscator.server.storage import ADD, open_storage
from tests.server.fakes import faces, payloads
from tests.server.procs import launch_server

OCTET = {"Content-Type": "application/octet-stream"}


def test_sigkill_during_enrolment_burst_loses_nothing_acknowledged(tmp_path, keys):
    model = make_random_model(tmp_path / "model")
    db = tmp_path / "gallery.db"
    cache_key = new_cache_key()
    env = {"FACEOBF_CACHE_KEY": cache_key}
    pool = payloads(faces(8, seed=3), seed=4)
    admin = {"Authorization": f"Bearer {keys['admin']}"}

    server = launch_server(
        model=model, db_url=f"sqlite:///{db}", keys=keys, log=tmp_path / "a.log", env=env
    )
    server.wait_ready()
    for s in range(4):
        r = httpx.post(f"{server.url}/v1/subjects", json={"subject": f"s{s}"}, headers=admin)
        assert r.status_code == 201

    acked: dict[int, tuple[str, bytes]] = {}
    failures: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def burst(worker: int) -> None:
        rng = np.random.default_rng(worker)
        with httpx.Client(base_url=server.url, timeout=10) as http:
            while not stop.is_set():
                subject, payload = f"s{rng.integers(4)}", pool[rng.integers(len(pool))]
                try:
                    r = http.post(
                        f"/v1/subjects/{subject}/templates", content=payload, headers=admin | OCTET
                    )
                except httpx.HTTPError:
                    continue  # the server is gone: not acknowledged
                if r.status_code == 201:
                    with lock:
                        acked[r.json()["template_id"]] = (subject, payload)
                else:
                    failures.append(f"{r.status_code} {r.text}")

    threads = [threading.Thread(target=burst, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(acked) < 12 and time.monotonic() < deadline and server.proc.poll() is None:
        time.sleep(0.05)
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait(timeout=30)
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert not failures, failures[:3]
    assert len(acked) >= 12, f"only {len(acked)} enrolments acknowledged before the kill"

    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    storage = open_storage(f"sqlite:///{db}")
    try:
        ids = storage.template_ids()
        stored = storage.payloads(ids)
        assert set(acked) <= set(ids)
        for tid, (subject, payload) in acked.items():
            assert stored[tid] == payload and tid in storage.template_ids(subject)
        # whole enrolments only: a decodable payload, its sealed embedding, its log entry
        key = ServerSettings(model_dir=model, cache_key=cache_key).cache_key_bytes()
        assert key is not None
        sealer = EmbeddingSealer(key, model_hash=model_hash(model), dim=512)
        sealed = storage.sealed_embeddings(ids, sealer.model_hash)
        assert sorted(sealed) == ids
        for tid in ids:
            decode_payload(stored[tid], ProtocolConfig())  # raises if damaged
            assert sealer.open(tid, sealed[tid]) is not None
        logged = {c.template_id for c in storage.changes_since(0) if c.op == ADD}
        assert logged == set(ids)
    finally:
        storage.close()

    again = launch_server(
        model=model, db_url=f"sqlite:///{db}", keys=keys, log=tmp_path / "b.log", env=env
    )
    try:
        health = again.wait_ready()
        assert health["templates_indexed"] == len(ids)
        ids_bytes = np.array(sorted(ids), dtype="<i8").tobytes()
        assert health["index_digest"] == hashlib.sha256(ids_bytes).hexdigest()
        tid, (subject, payload) = max(acked.items())
        r = httpx.post(
            f"{again.url}/v1/verify",
            params={"subject": subject},
            content=payload,
            headers=admin | OCTET,
        )
        assert r.status_code == 200 and abs(r.json()["score"] - 1.0) < 1e-4
    finally:
        again.stop()
