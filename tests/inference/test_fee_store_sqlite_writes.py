"""The fee store's per-request writes as plain SQL on its writer's ``sqlite3`` connection: exact
totals under concurrency, a failing write isolated, amounts beyond 64 bits, the same stored
representation as the SQLAlchemy path, and files written by the previous code (real SQLite files,
a real writer thread)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest

from broker.inference.fee_store import DisputedTotals, FeeStore, FeeTotals
from broker.inference.response_signature import VerificationReason, VerificationResult

USER = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
PROVIDER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


def _verified(chat_id: str) -> VerificationResult:
    return VerificationResult(True, VerificationReason.VERIFIED, PROVIDER, chat_id, "ok")


def _hold(store: FeeStore):
    """Occupy the store's writer so that the writes queued next form one group; returns the
    event that lets it go on and the blocker's future."""
    gate, started = threading.Event(), threading.Event()

    def blocker(conn):
        started.set()
        gate.wait(10)

    first = store._writer.submit(blocker)
    assert started.wait(10)
    return gate, first


def test_many_concurrent_exchanges_from_one_loop_land_exactly(tmp_path):
    """500 answered requests written at once from one event loop (serve under load): each
    returns the totals after its own commit, the totals are exact, every verification is logged,
    and the writes share commits (group commit)."""
    url = f"sqlite:///{tmp_path / 'c.db'}"
    store = FeeStore(url, max_verifications=10_000)
    fee = 7 * 10**15

    async def main() -> list:
        return await asyncio.gather(
            *(
                store.arecord_exchange(USER, PROVIDER, fee=fee, verification=_verified(f"c{i}"))
                for i in range(500)
            )
        )

    commits = store._writer.commits
    results = asyncio.run(main())
    assert sorted(r.request_count for r in results) == list(range(1, 501))
    assert all(r.total_fee == fee * r.request_count for r in results)
    assert store._writer.commits - commits < 500  # grouped
    store.close()
    reopened = FeeStore(url, max_verifications=10_000)
    assert reopened.get_totals(USER, PROVIDER) == FeeTotals(500 * fee, 500 * fee, 500)
    logged = {r.chat_id for r in reopened.recent_verifications(limit=1000)}
    assert logged == {f"c{i}" for i in range(500)}
    reopened.close()


def test_invalid_write_fails_alone_before_anything_is_written(tmp_path):
    """Attack: a negative fee (and a non-int one) among writes queued together. Only those callers
    get ``ValueError``, before anything of theirs is queued (their verification is not logged); the
    others of the group are committed."""
    url = f"sqlite:///{tmp_path / 'i.db'}"
    store = FeeStore(url)

    async def main() -> list:
        gate, _first = _hold(store)
        calls = [
            store.arecord_exchange(USER, PROVIDER, fee=3, verification=_verified(f"ok{i}"))
            for i in range(10)
        ]
        calls.insert(4, store.arecord_exchange(USER, PROVIDER, fee=-1, verification=_verified("n")))
        calls.insert(7, store.aadd_fee(USER, PROVIDER, 2.5))
        calls.append(store.arecord_disputed(USER, PROVIDER, "d", -5, "response_hash_mismatch"))
        tasks = [asyncio.ensure_future(c) for c in calls]
        await asyncio.sleep(0.05)  # every valid write is queued behind the blocker
        gate.set()
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(main())
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 3 and all(isinstance(e, ValueError) for e in errors)
    assert sorted(r.request_count for r in results if isinstance(r, FeeTotals)) == list(
        range(1, 11)
    )
    assert store._writer.replays == 0  # checked before queuing: the group ran without savepoints
    assert store.get_totals(USER, PROVIDER) == FeeTotals(30, 30, 10)
    assert {r.chat_id for r in store.recent_verifications()} == {f"ok{i}" for i in range(10)}
    assert store.disputed_totals(USER, PROVIDER) == DisputedTotals(0, 0)
    store.close()


def test_a_write_failing_inside_the_group_is_rolled_back_alone(tmp_path):
    """Attack: a write of the group fails inside SQLite after writing (a constraint violation).
    The group is applied again with savepoints: that write changes nothing and its caller gets the
    error; the fee writes queued with it are committed exactly once."""
    url = f"sqlite:///{tmp_path / 'f.db'}"
    store = FeeStore(url)
    store.add_fee(USER, PROVIDER, 1)

    def clashing(conn):
        conn.execute("UPDATE fee_totals SET cached_fee = '999'")
        conn.execute("INSERT INTO fee_totals (user, provider) VALUES (?, ?)", (USER.lower(), "x"))

    async def main() -> list:
        gate, _first = _hold(store)
        before = [asyncio.ensure_future(store.aadd_fee(USER, PROVIDER, 10)) for _ in range(5)]
        await asyncio.sleep(0.05)
        bad = asyncio.wrap_future(store._writer.submit(clashing))
        after = [asyncio.ensure_future(store.aadd_fee(USER, PROVIDER, 10)) for _ in range(5)]
        await asyncio.sleep(0.05)
        gate.set()
        return await asyncio.gather(*before, bad, *after, return_exceptions=True)

    results = asyncio.run(main())
    assert isinstance(results[5], sqlite3.IntegrityError)
    assert [r.request_count for r in results[:5] + results[6:]] == list(range(2, 12))
    assert store._writer.replays == 1
    assert store.get_totals(USER, PROVIDER) == FeeTotals(101, 101, 11)
    store.close()


def test_cancelled_caller_still_gets_its_fee_recorded(tmp_path):
    """Attack: the request's task is cancelled (client gone) while its fee write waits in the
    queue. The provider billed it, so the write is still committed; the writer keeps going."""
    url = f"sqlite:///{tmp_path / 'x.db'}"
    store = FeeStore(url)

    async def main() -> FeeTotals:
        gate, _first = _hold(store)
        doomed = [
            asyncio.ensure_future(
                store.arecord_exchange(USER, PROVIDER, fee=4, verification=_verified(f"x{i}"))
            )
            for i in range(3)
        ]
        await asyncio.sleep(0.05)  # queued behind the blocker
        for task in doomed:
            task.cancel()
        await asyncio.sleep(0.05)  # the cancellation has reached every layer
        gate.set()
        await asyncio.gather(*doomed, return_exceptions=True)
        assert all(task.cancelled() for task in doomed)
        return await store.aadd_fee(USER, PROVIDER, 1)

    assert asyncio.run(main()) == FeeTotals(13, 13, 4)
    assert {r.chat_id for r in store.recent_verifications()} == {"x0", "x1", "x2"}
    store.close()


def test_amounts_beyond_64_bits_are_exact_and_stored_as_text(tmp_path):
    """Fees beyond 2^63 and 2^64 neuron (and their sums) are exact: stored as decimal TEXT as
    before, read back as the same ints, in the fee totals and the disputed fees."""
    path = tmp_path / "b.db"
    store = FeeStore(f"sqlite:///{path}")
    huge = 2**64 + 12345
    assert store.add_fee(USER, PROVIDER, 2**63) == FeeTotals(2**63, 2**63, 1)
    totals = asyncio.run(store.arecord_exchange(USER, PROVIDER, fee=huge))
    assert totals == FeeTotals(2**63 + huge, 2**63 + huge, 2)
    assert store.record_disputed(USER, PROVIDER, "d", 10**40 + 1, "r") == DisputedTotals(
        1, 10**40 + 1
    )
    store.close()
    raw = sqlite3.connect(path)
    row = raw.execute(
        "SELECT cached_fee, typeof(cached_fee), total_fee, typeof(total_fee) FROM fee_totals"
    ).fetchone()
    assert row == (str(2**63 + huge + 10**40 + 1), "text", str(2**63 + huge), "text")
    assert raw.execute("SELECT fee, typeof(fee) FROM disputed_fees").fetchone() == (
        str(10**40 + 1),
        "text",
    )
    raw.close()
    reopened = FeeStore(f"sqlite:///{path}")
    assert reopened.get_totals(USER, PROVIDER) == FeeTotals(
        2**63 + huge + 10**40 + 1, 2**63 + huge, 2
    )
    reopened.close()


_STORAGE = {
    "fee_totals": "user, provider, cached_fee, total_fee, request_count, updated_at",
    "verification_results": "id, user, provider, chat_id, verified, reason, signer, detail, "
    "created_at",
    "disputed_fees": "id, user, provider, chat_id, fee, reason, created_at",
}


def _stored(conn, table: str) -> list[tuple]:
    """Every row of ``table`` as (value, SQLite storage class) pairs, times left out (they
    differ) but their storage class kept."""
    columns = [c.strip() for c in _STORAGE[table].split(",")]
    select = ", ".join(f"{c}, typeof({c})" for c in columns)
    rows = conn.exec_driver_sql(f"SELECT {select} FROM {table} ORDER BY 1, 2").fetchall()
    return [
        tuple(v for i, v in enumerate(row) if not (columns[i // 2].endswith("_at") and i % 2 == 0))
        for row in rows
    ]


def _same_writes(store: FeeStore) -> None:
    store.add_fee(USER, PROVIDER, 2**70)
    store.record_exchange(USER, PROVIDER, fee=5, verification=_verified("x1"))
    store.record_verification(
        USER, PROVIDER, VerificationResult(None, VerificationReason.NO_CHAT_ID, None, None, "d")
    )
    store.record_verification(
        USER, PROVIDER, VerificationResult(False, VerificationReason.SIGNER_MISMATCH, USER, "c2")
    )
    store.record_disputed(USER, PROVIDER, None, 9, "response_hash_mismatch")
    store.record_disputed(USER, "0x" + "3" * 40, "c3", 2**65, "x" * 80)  # reason cut to 64


def test_plain_sql_path_stores_exactly_what_the_sqlalchemy_path_stores(tmp_path):
    """The same writes through the SQLAlchemy path (an in-memory database) and the plain-SQL path
    (a file) leave the same values with the same SQLite storage classes in every row."""
    orm = FeeStore("sqlite://")
    plain = FeeStore(f"sqlite:///{tmp_path / 's.db'}")
    _same_writes(orm)
    _same_writes(plain)
    with orm._engine.connect() as a, plain._engine.connect() as b:
        for table in _STORAGE:
            assert _stored(a, table) == _stored(b, table), table
            assert _stored(b, table)
    plain.close()


# the schema as the previous code (SQLAlchemy's create_all) wrote it
_OLD_SCHEMA = """
CREATE TABLE fee_totals (
    user VARCHAR(42) NOT NULL, provider VARCHAR(42) NOT NULL, cached_fee TEXT NOT NULL,
    total_fee TEXT NOT NULL, request_count INTEGER NOT NULL, updated_at DOUBLE NOT NULL,
    PRIMARY KEY (user, provider));
CREATE TABLE verification_results (
    id INTEGER NOT NULL, user VARCHAR(42) NOT NULL, provider VARCHAR(42) NOT NULL, chat_id TEXT,
    verified BOOLEAN, reason VARCHAR(64) NOT NULL, signer VARCHAR(42), detail TEXT NOT NULL,
    created_at DOUBLE NOT NULL, PRIMARY KEY (id));
CREATE INDEX ix_verification_results_created_at ON verification_results (created_at);
CREATE INDEX ix_verification_results_provider ON verification_results (provider);
CREATE INDEX ix_verification_results_user ON verification_results (user);
CREATE TABLE disputed_fees (
    id INTEGER NOT NULL, user VARCHAR(42) NOT NULL, provider VARCHAR(42) NOT NULL, chat_id TEXT,
    fee TEXT NOT NULL, reason VARCHAR(64) NOT NULL, created_at DOUBLE NOT NULL,
    PRIMARY KEY (id));
"""


def test_file_written_by_the_previous_code_is_read_and_updated(tmp_path):
    """A database left by the previous release (its schema and its rows, written here in plain
    SQL as its SQLAlchemy path stored them) opens, reads back identically and is updated exactly,
    its verification log kept in order."""
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(_OLD_SCHEMA)
    big = 123456789012345678901234567890
    user, provider = USER.lower(), PROVIDER.lower()
    old.execute(
        "INSERT INTO fee_totals VALUES (?, ?, ?, ?, 3, 1700000000.5)",
        (user, provider, str(big - 7), str(big)),
    )
    old.execute(
        "INSERT INTO verification_results (user, provider, chat_id, verified, reason, signer, "
        "detail, created_at) VALUES (?, ?, 'old1', 1, 'verified', ?, '', 1700000000.0)",
        (user, provider, provider),
    )
    old.execute(
        "INSERT INTO disputed_fees (user, provider, chat_id, fee, reason, created_at) "
        "VALUES (?, ?, 'd0', ?, 'response_hash_mismatch', 1700000000.0)",
        (user, provider, str(2**64)),
    )
    old.commit()
    old.close()

    store = FeeStore(f"sqlite:///{path}")
    assert store.get_totals(USER, PROVIDER) == FeeTotals(big - 7, big, 3)
    assert store.disputed_totals(USER, PROVIDER) == DisputedTotals(1, 2**64)
    assert asyncio.run(
        store.arecord_exchange(USER, PROVIDER, fee=10, verification=_verified("new1"))
    ) == FeeTotals(big + 3, big + 10, 4)
    assert store.record_disputed(USER, PROVIDER, "d1", 1, "r") == DisputedTotals(2, 2**64 + 1)
    assert [(r.chat_id, r.verified) for r in store.recent_verifications()] == [
        ("new1", True),
        ("old1", True),
    ]
    store.close()
    assert FeeStore(f"sqlite:///{path}").get_totals(USER, PROVIDER) == FeeTotals(
        big + 4, big + 10, 4
    )


def test_verification_bad_reason_is_refused_before_queuing(tmp_path):
    store = FeeStore(f"sqlite:///{tmp_path / 'r.db'}")
    bad = VerificationResult(True, "not-a-reason", PROVIDER, "c")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        store.record_exchange(USER, PROVIDER, fee=1, verification=bad)
    assert store.get_totals(USER, PROVIDER) == FeeTotals(0, 0, 0)
    store.close()
