"""The change log is pruned once every recent process has applied it; a process that
falls behind the pruned log reloads, and every index still equals the database."""

from __future__ import annotations

import time

from faceobfuscator.server.service import GalleryService
from tests.server.test_service import ENROL, _enrol_all, _service


def _log(service: GalleryService) -> list[int]:
    return [c.seq for c in service.storage.changes_since(0)]


def _equal_to_database(*services: GalleryService) -> bool:
    want = set(services[0].storage.template_ids())
    return all(s.index.template_ids() == want for s in services)


def test_log_is_pruned_only_after_every_process_applied_it(db_url):
    a, b = _service(db_url), _service(db_url)
    try:
        _enrol_all(a, 3)
        a.delete_subject("p0")
        seqs = _log(a)
        assert len(seqs) == 4 and a.storage.pruned_through() == 0
        # b reported its position when it loaded (before any change): nothing goes
        assert a.housekeeping(keep_s=600) == 0 and _log(a) == seqs
        b.sync()
        assert b.housekeeping(keep_s=600) == 3  # the newest change stays
        assert _log(a) == seqs[-1:] and a.storage.pruned_through() == seqs[-1] - 1
        assert a.storage.last_seq() == seqs[-1]
        c = _service(db_url)  # a process started after pruning loads from the tables
        try:
            assert _equal_to_database(a, b, c) and len(c.index) == 2
        finally:
            c.close()
    finally:
        a.close()
        b.close()


def test_a_process_behind_the_pruned_log_reloads(db_url):
    a, b = _service(db_url), _service(db_url)
    try:
        _enrol_all(a, 3)
        b.sync()
        b.housekeeping(keep_s=600)
        time.sleep(0.2)  # b goes quiet
        a.create_subject("late")
        a.enrol("late", ENROL[3])
        a.delete_subject("p1")
        # b has not been seen for longer than keep_s: it no longer holds the log back
        assert a.housekeeping(keep_s=0.1) > 0
        assert a.storage.pruned_through() > b._seq
        assert b.index.template_ids() != set(a.storage.template_ids())
        b.sync()  # sees it is behind the pruned log and reloads
        assert _equal_to_database(a, b)
        assert b.identify(ENROL[3], top_k=1).best.subject == "late"  # type: ignore[union-attr]
    finally:
        a.close()
        b.close()
