"""The gallery storage, the same tests on SQLite and PostgreSQL."""

from __future__ import annotations

import os

import pytest

from faceobfuscator.errors import (
    SubjectExistsError,
    UnknownSubjectError,
    UnknownTemplateError,
)
from faceobfuscator.server.storage import ADD, DELETE, open_storage

H = "ab" * 32


def test_subjects_create_get_list_count(storage):
    storage.create_subject("bob")
    storage.create_subject("alice")
    assert storage.get_subject("alice").n_templates == 0
    assert [s.name for s in storage.list_subjects(limit=10)] == ["alice", "bob"]
    assert [s.name for s in storage.list_subjects(limit=1, offset=1)] == ["bob"]
    assert storage.count() == (2, 0)


def test_duplicate_and_unknown_subjects_raise(storage):
    storage.create_subject("alice")
    with pytest.raises(SubjectExistsError, match="alice"):
        storage.create_subject("alice")
    with pytest.raises(UnknownSubjectError, match="carol"):
        storage.get_subject("carol")
    with pytest.raises(UnknownSubjectError):
        storage.delete_subject("carol")
    with pytest.raises(UnknownSubjectError):
        storage.add_template("carol", b"x", protocol_hash=H)


def test_payloads_are_stored_byte_exact(storage):
    storage.create_subject("alice")
    blob = bytes(range(256)) * 400
    ref = storage.add_template("alice", blob, protocol_hash=H)
    assert storage.payloads([ref.template_id]) == {ref.template_id: blob}
    assert storage.get_subject("alice").n_templates == 1
    assert storage.protocol_hashes() == [H]


def test_batch_with_an_unknown_subject_stores_nothing(storage):
    storage.create_subject("alice")
    with pytest.raises(UnknownSubjectError):
        storage.add_templates([("alice", b"1"), ("nobody", b"2")], protocol_hash=H)
    assert storage.count() == (1, 0)
    assert storage.last_seq() == 0


def test_add_templates_can_create_subjects(storage):
    refs = storage.add_templates(
        [("a", b"1"), ("b", b"2"), ("a", b"3")], protocol_hash=H, create_subjects=True
    )
    assert [r.name for r in refs] == ["a", "b", "a"]
    assert refs[0].subject_id == refs[2].subject_id != refs[1].subject_id
    assert storage.count() == (2, 3)


def test_delete_subject_removes_templates_cache_and_logs_ids(storage):
    storage.create_subject("alice")
    storage.create_subject("bob")
    a = storage.add_templates([("alice", b"1"), ("alice", b"2")], protocol_hash=H)
    b = storage.add_template("bob", b"3", protocol_hash=H, seal=lambda t: b"s%d" % t)
    storage.put_sealed([(a[0].template_id, b"sealed")], "m")
    removed = storage.delete_subject("alice")
    assert sorted(removed) == sorted(r.template_id for r in a)
    assert storage.template_ids() == [b.template_id]
    assert storage.payloads([r.template_id for r in a]) == {}
    assert storage.sealed_embeddings([a[0].template_id], "m") == {}
    assert storage.sealed_embeddings([b.template_id], "") == {b.template_id: b"s%d" % b.template_id}
    log = storage.changes_since(0)
    assert [(c.op, c.template_id) for c in log] == [
        (ADD, a[0].template_id),
        (ADD, a[1].template_id),
        (ADD, b.template_id),
        (DELETE, a[0].template_id),
        (DELETE, a[1].template_id),
    ]
    assert [c.seq for c in log] == sorted(c.seq for c in log)
    assert storage.changes_since(log[2].seq)[0].op == DELETE


def test_template_ids_are_never_reused(storage):
    storage.create_subject("alice")
    first = storage.add_template("alice", b"1", protocol_hash=H).template_id
    storage.delete_template("alice", first)
    assert storage.add_template("alice", b"2", protocol_hash=H).template_id > first


def test_delete_template_checks_its_subject(storage):
    storage.create_subject("alice")
    storage.create_subject("bob")
    t = storage.add_template("alice", b"1", protocol_hash=H).template_id
    with pytest.raises(UnknownTemplateError):
        storage.delete_template("bob", t)
    storage.delete_template("alice", t)
    assert storage.template_ids("alice") == []
    assert storage.changes_since(0)[-1].op == DELETE


def test_put_sealed_replaces_and_skips_deleted_templates(storage):
    storage.create_subject("alice")
    t1, t2 = (
        r.template_id
        for r in storage.add_templates([("alice", b"1"), ("alice", b"2")], protocol_hash=H)
    )
    storage.put_sealed([(t1, b"old")], "m1")
    storage.delete_template("alice", t2)
    storage.put_sealed([(t1, b"new"), (t2, b"ghost")], "m2")
    assert storage.sealed_embeddings([t1, t2], "m2") == {t1: b"new"}
    assert storage.sealed_embeddings([t1], "m1") == {}


def test_iter_refs_pages_in_id_order(storage):
    storage.add_templates(
        [(f"s{i % 3}", b"x") for i in range(7)], protocol_hash=H, create_subjects=True
    )
    pages = list(storage.iter_refs(batch=3))
    assert [len(p) for p in pages] == [3, 3, 1]
    ids = [r.template_id for p in pages for r in p]
    assert ids == sorted(ids) == storage.template_ids()
    assert {r.name for p in pages for r in p} == {"s0", "s1", "s2"}


def test_reopening_sees_everything(db_url):
    s = open_storage(db_url)
    s.add_templates([("alice", b"1")], protocol_hash=H, create_subjects=True)
    s.close()
    again = open_storage(db_url)
    try:
        assert again.count() == (1, 1)
        assert again.last_seq() == 1
    finally:
        again.close()


def test_sqlite_erasure_leaves_no_copy_of_the_payload_on_disk(tmp_path):
    path = tmp_path / "g.db"
    storage = open_storage(f"sqlite:///{path}")
    secret, other = os.urandom(100_000), os.urandom(100_000)
    storage.add_templates([("a", secret), ("b", other)], protocol_hash=H, create_subjects=True)

    def on_disk() -> bytes:
        return b"".join(p.read_bytes() for p in tmp_path.glob("g.db*"))

    # 16-byte samples: the payload spans overflow pages, a sample may straddle two
    probes = [secret[i : i + 16] for i in range(0, 100_000, 5_000)]
    assert sum(p in on_disk() for p in probes) >= 18
    storage.delete_subject("a")
    disk = on_disk()
    assert not any(p in disk for p in probes)
    assert sum(other[i : i + 16] in disk for i in range(0, 100_000, 5_000)) >= 18
    storage.close()


def test_iter_refs_sealed_pairs_each_ref_with_its_models_cached_embedding(storage):
    refs = storage.add_templates(
        [(f"s{i % 2}", b"x") for i in range(5)], protocol_hash=H, create_subjects=True
    )
    t = [r.template_id for r in refs]
    storage.put_sealed([(t[0], b"a0"), (t[3], b"a3")], "m1")
    storage.put_sealed([(t[1], b"b1")], "m2")
    pages = list(storage.iter_refs_sealed("m1", batch=2))
    assert [len(p.template_ids) for p in pages] == [2, 2, 1]
    got = [z for p in pages for z in zip(p.template_ids, p.names, p.sealed, strict=True)]
    assert got == [
        (t[0], "s0", b"a0"), (t[1], "s1", None), (t[2], "s0", None),
        (t[3], "s1", b"a3"), (t[4], "s0", None),
    ]  # fmt: skip
    assert pages[0].refs([1]) == [storage.refs([t[1]])[0]]
