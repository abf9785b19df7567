from __future__ import annotations

import re
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from faceobfuscator.errors import (
    ChallengeError,
    ChallengeExpiredError,
    ChallengeMismatchError,
    ChallengeUsedError,
    InputError,
    UnknownChallengeError,
)
from faceobfuscator.server.security.challenges import ChallengeService, SQLChallengeStore
from faceobfuscator.server.storage import SQLStorage, open_storage


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(db: SQLStorage, clock: Clock) -> ChallengeService:
    return ChallengeService(SQLChallengeStore(db), ttl_s=60, retain_s=600, clock=clock)


def test_a_challenge_is_good_exactly_once(service: ChallengeService, clock: Clock) -> None:
    c = service.issue("verify", "ann")
    assert re.fullmatch(r"[0-9a-f]{32}", c.id)
    assert (c.operation, c.subject, c.expires_at) == ("verify", "ann", clock.now + 60)
    assert service.consume(c.id, "verify", "ann") == c
    with pytest.raises(ChallengeUsedError, match="already used"):
        service.consume(c.id, "verify", "ann")


def test_ids_are_distinct(service: ChallengeService) -> None:
    ids = {service.issue("identify").id for _ in range(50)}
    assert len(ids) == 50


def test_unknown_and_malformed(service: ChallengeService) -> None:
    with pytest.raises(UnknownChallengeError, match="did not issue"):
        service.consume("0" * 32, "identify")
    with pytest.raises(UnknownChallengeError, match="malformed"):
        service.consume("'; DROP TABLE challenges; --", "identify")


def test_expired_then_spent(service: ChallengeService, clock: Clock) -> None:
    c = service.issue("identify")
    clock.now += 60
    with pytest.raises(ChallengeExpiredError, match="expired 0.0 s ago"):
        service.consume(c.id, "identify")
    with pytest.raises(ChallengeUsedError):
        service.consume(c.id, "identify")


def test_good_until_just_before_expiry(service: ChallengeService, clock: Clock) -> None:
    c = service.issue("identify")
    clock.now += 59.999
    assert service.consume(c.id, "identify").id == c.id


@pytest.mark.parametrize(
    ("op", "subject", "needle"),
    [("enroll", "ann", "issued for 'verify', not 'enroll'"), ("verify", "bob", "another subject")],
)
def test_mismatch_is_refused_and_burns_the_challenge(
    service: ChallengeService, op: str, subject: str, needle: str
) -> None:
    c = service.issue("verify", "ann")
    with pytest.raises(ChallengeMismatchError, match=needle):
        service.consume(c.id, op, subject)
    with pytest.raises(ChallengeUsedError):
        service.consume(c.id, "verify", "ann")


def test_issue_validates(service: ChallengeService) -> None:
    with pytest.raises(InputError, match="identify is bound to no subject"):
        service.issue("identify", "ann")
    with pytest.raises(InputError, match="operation='delete'"):
        service.issue("delete", "ann")


def test_purge_forgets_long_expired(service: ChallengeService, clock: Clock) -> None:
    old = service.issue("identify")
    clock.now += 700  # past ttl + retain; the next issue purges
    fresh = service.issue("identify")
    with pytest.raises(UnknownChallengeError):
        service.consume(old.id, "identify")
    assert service.consume(fresh.id, "identify") == fresh


def test_processes_sharing_the_database_agree(db: SQLStorage, db_url: str, clock: Clock) -> None:
    """Two store instances on separate connections (as two API processes): what one issues
    the other consumes, once."""
    other = open_storage(db_url)
    try:
        a = ChallengeService(SQLChallengeStore(db), clock=clock)
        b = ChallengeService(SQLChallengeStore(other), clock=clock)
        c = a.issue("enroll", "ann")
        assert b.consume(c.id, "enroll", "ann") == c
        with pytest.raises(ChallengeUsedError):
            a.consume(c.id, "enroll", "ann")
    finally:
        other.close()


def test_concurrent_consumers_exactly_one_wins(service: ChallengeService) -> None:
    """Eight threads, each on its own database connection, race for each challenge."""
    challenges = [service.issue("verify", "ann") for _ in range(10)]
    wins: list[str] = []
    errors: list[type] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def racer() -> None:
        start.wait()
        for c in challenges:
            try:
                service.consume(c.id, "verify", "ann")
                with lock:
                    wins.append(c.id)
            except ChallengeError as exc:
                with lock:
                    errors.append(type(exc))

    threads = [threading.Thread(target=racer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == sorted(c.id for c in challenges)
    assert errors == [ChallengeUsedError] * 70


class ChallengeModel(RuleBasedStateMachine):
    """Any sequence of issues, consumptions and clock steps against a plain model."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.db = open_storage(f"sqlite:///{Path(self.tmp.name) / 'c.db'}", synchronous="NORMAL")
        self.clock = Clock()
        self.svc = ChallengeService(
            SQLChallengeStore(self.db), ttl_s=10, retain_s=10**9, clock=self.clock
        )
        self.model: dict[str, tuple[str, str, float, bool]] = {}

    @rule(op=st.sampled_from(["enroll", "verify", "identify"]), subject=st.sampled_from("ab"))
    def issue(self, op: str, subject: str) -> None:
        subject = "" if op == "identify" else subject
        c = self.svc.issue(op, subject)
        self.model[c.id] = (op, subject, c.expires_at, False)

    @precondition(lambda self: self.model)
    @rule(
        pick=st.integers(0, 10**6),
        op=st.sampled_from(["enroll", "verify", "identify"]),
        subject=st.sampled_from("ab"),
    )
    def consume(self, pick: int, op: str, subject: str) -> None:
        subject = "" if op == "identify" else subject
        cid = sorted(self.model)[pick % len(self.model)]
        m_op, m_subject, expires, used = self.model[cid]
        want: type | None
        if used:
            want = ChallengeUsedError
        elif expires <= self.clock.now:
            want = ChallengeExpiredError
        elif (m_op, m_subject) != (op, subject):
            want = ChallengeMismatchError
        else:
            want = None
        self.model[cid] = (m_op, m_subject, expires, True)
        if want is None:
            assert self.svc.consume(cid, op, subject).id == cid
        else:
            with pytest.raises(want):
                self.svc.consume(cid, op, subject)

    @rule(step=st.floats(0, 8))
    def tick(self, step: float) -> None:
        self.clock.now += step

    @invariant()
    def unknown_stays_unknown(self) -> None:
        with pytest.raises(UnknownChallengeError):
            self.svc.consume("f" * 32, "identify")

    def teardown(self) -> None:
        self.db.close()
        self.tmp.cleanup()


ChallengeModel.TestCase.settings = settings(max_examples=15, stateful_step_count=15, deadline=None)
test_challenge_model = ChallengeModel.TestCase
