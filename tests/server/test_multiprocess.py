"""Two API processes sharing PostgreSQL, with concurrent enrolments and deletions: the
database stays consistent and so does every process's in-memory index."""

from __future__ import annotations

import hashlib
import threading

import httpx
import numpy as np

from faceobfuscator.recognition.modeldir import make_random_model
from faceobfuscator.server.embedder import model_hash
from faceobfuscator.server.keys import new_cache_key
from faceobfuscator.server.storage import ADD, DELETE, open_storage
from tests.server.fakes import faces, payloads
from tests.server.procs import launch_server

OCTET = {"Content-Type": "application/octet-stream"}
SUBJECTS = [f"s{i}" for i in range(5)]


def _worker(url: str, admin: dict, pool: list[bytes], seed: int, ops: int, bad: list[str]) -> None:
    rng = np.random.default_rng(seed)
    allowed = {
        "enrol": {201, 404},
        "list": {200, 404},
        "del_t": {204, 404},
        "del_s": {204, 404},
        "create": {201, 409},
    }

    def check(kind: str, r: httpx.Response) -> httpx.Response:
        if r.status_code not in allowed[kind]:
            bad.append(f"{kind}: {r.status_code} {r.text[:200]}")
        return r

    with httpx.Client(base_url=url, headers=admin, timeout=60) as http:
        for _ in range(ops):
            i = int(rng.integers(len(SUBJECTS)))
            s = SUBJECTS[i]
            op = rng.choice(["enrol", "enrol", "enrol", "del_t", "del_s"])
            if op == "enrol":
                r = check(
                    "enrol",
                    http.post(f"/v1/subjects/{s}/templates", content=pool[i], headers=OCTET),
                )
                if r.status_code == 404:
                    check("create", http.post("/v1/subjects", json={"subject": s}))
            elif op == "del_t":
                r = check("list", http.get(f"/v1/subjects/{s}/templates"))
                tids = r.json()["template_ids"] if r.status_code == 200 else []
                if tids:
                    check("del_t", http.delete(f"/v1/subjects/{s}/templates/{rng.choice(tids)}"))
            else:
                check("del_s", http.delete(f"/v1/subjects/{s}"))
                check("create", http.post("/v1/subjects", json={"subject": s}))


def test_concurrent_enrol_and_delete_across_processes(tmp_path, keys, pg_url):
    model = make_random_model(tmp_path / "model")
    cache_key = new_cache_key()
    env = {"FACEOBF_SYNC_INTERVAL_S": "0.2", "FACEOBF_CACHE_KEY": cache_key}
    servers = [
        launch_server(model=model, db_url=pg_url, keys=keys, log=tmp_path / f"s{i}.log", env=env)
        for i in range(2)
    ]
    admin = {"Authorization": f"Bearer {keys['admin']}"}
    pool = payloads(faces(len(SUBJECTS) + 1, seed=5), seed=6)
    try:
        for s in servers:
            s.wait_ready()
        for name in SUBJECTS:
            assert (
                httpx.post(
                    f"{servers[0].url}/v1/subjects", json={"subject": name}, headers=admin
                ).status_code
                == 201
            )

        bad: list[str] = []
        threads = [
            threading.Thread(target=_worker, args=(servers[w % 2].url, admin, pool, w, 15, bad))
            for w in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=240)
        assert not any(t.is_alive() for t in threads), "workers did not finish"
        assert not bad, bad[:5]

        storage = open_storage(pg_url)
        try:
            ids = storage.template_ids()
            live: set[int] = set()
            for c in storage.changes_since(0, limit=10**6):
                (live.add if c.op == ADD else live.discard)(c.template_id)
                assert c.op in (ADD, DELETE)
            assert live == set(ids)
            sealed = storage.sealed_embeddings(ids, model_hash(model))
            assert sorted(sealed) == ids  # every template with its sealed embedding
            counts = {r.name: r.n_templates for r in storage.list_subjects(limit=100)}
            assert sum(counts.values()) == len(ids)
        finally:
            storage.close()
        digest = hashlib.sha256(np.array(ids, dtype="<i8").tobytes()).hexdigest()
        for s in servers:
            health = httpx.get(f"{s.url}/v1/health").json()
            assert (health["templates_indexed"], health["index_digest"]) == (len(ids), digest)

        # erasure through one process is immediate in the other
        a, b = servers[0].url, servers[1].url
        probe = pool[-1]
        for round_ in range(3):
            name = f"erase{round_}"
            assert (
                httpx.post(f"{a}/v1/subjects", json={"subject": name}, headers=admin).status_code
                == 201
            )
            assert (
                httpx.post(
                    f"{a}/v1/subjects/{name}/templates", content=probe, headers=admin | OCTET
                ).status_code
                == 201
            )
            r = httpx.post(
                f"{b}/v1/verify", params={"subject": name}, content=probe, headers=admin | OCTET
            )
            assert r.status_code == 200 and r.json()["score"] > 0.9999
            assert httpx.delete(f"{a}/v1/subjects/{name}", headers=admin).status_code == 204
            r = httpx.post(
                f"{b}/v1/identify", params={"top_k": 50}, content=probe, headers=admin | OCTET
            )
            assert name not in [c["subject"] for c in r.json()["candidates"]]
            r = httpx.post(
                f"{b}/v1/verify", params={"subject": name}, content=probe, headers=admin | OCTET
            )
            assert r.status_code == 404
    finally:
        for s in servers:
            s.stop()
