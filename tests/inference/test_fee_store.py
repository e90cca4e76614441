"""The SQLite fee store: persistence across engines, thread safety, verification log, token ids."""

from __future__ import annotations

import threading

import pytest

from broker.inference.fee_store import FeeStore, FeeTotals, default_database_url
from broker.inference.response_signature import VerificationReason, VerificationResult

USER = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
PROVIDER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


def test_totals_survive_a_new_engine_on_the_same_file(tmp_path):
    url = f"sqlite:///{tmp_path / 'sub' / 'inference.db'}"
    store = FeeStore(url)
    big = 25 * 10**18  # beyond SQLite's 64-bit integers once summed
    store.add_fee(USER, PROVIDER, big)
    assert store.add_fee(USER.lower(), PROVIDER.upper().replace("0X", "0x"), 5) == FeeTotals(
        big + 5, big + 5, 2
    )
    store.set_cached_fee(USER, PROVIDER, 0)
    store.close()

    reopened = FeeStore(url)
    assert reopened.get_totals(USER, PROVIDER) == FeeTotals(0, big + 5, 2)
    assert reopened.get_cached_fee(USER, "0x" + "1" * 40) == 0
    with pytest.raises(ValueError):
        reopened.add_fee(USER, PROVIDER, -1)
    reopened.close()


def test_concurrent_adds_lose_nothing(tmp_path):
    store = FeeStore(f"sqlite:///{tmp_path / 'f.db'}")
    other = FeeStore(f"sqlite:///{tmp_path / 'f.db'}")  # a second engine, as another process would

    def work(s: FeeStore) -> None:
        for _ in range(25):
            s.add_fee(USER, PROVIDER, 3)

    threads = [threading.Thread(target=work, args=(s,)) for s in (store, store, other, other)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get_totals(USER, PROVIDER) == FeeTotals(300, 300, 100)


def test_verification_log_is_bounded_and_newest_first(tmp_path):
    store = FeeStore(f"sqlite:///{tmp_path / 'v.db'}", max_verifications=3)
    for i in range(5):
        store.record_verification(
            USER, PROVIDER,
            VerificationResult(i % 2 == 0, VerificationReason.VERIFIED, PROVIDER, f"c{i}", "d"),
        )  # fmt: skip
    store.record_verification(
        USER, "0x" + "2" * 40, VerificationResult(None, VerificationReason.NO_CHAT_ID)
    )
    records = store.recent_verifications()
    assert [r.chat_id for r in records] == [None, "c4", "c3"]
    only = store.recent_verifications(provider=PROVIDER)
    assert [(r.chat_id, r.verified) for r in only] == [("c4", True), ("c3", False)]
    assert only[0].reason is VerificationReason.VERIFIED


def test_issued_token_ids_per_generation(tmp_path):
    store = FeeStore(f"sqlite:///{tmp_path / 't.db'}")
    store.record_issued_token(USER, PROVIDER, 0, 0, 1, 0)
    store.record_issued_token(USER, PROVIDER, 0, 0, 1, 0)  # idempotent
    store.record_issued_token(USER, PROVIDER, 0, 4, 1, 0)
    store.record_issued_token(USER, PROVIDER, 1, 9, 1, 0)
    assert store.issued_token_ids(USER.lower(), PROVIDER, 0) == {0, 4}
    assert store.issued_token_ids(USER, PROVIDER, 1) == {9}
    assert store.issued_token_ids(USER, PROVIDER, 2) == set()


def test_default_url_is_under_zg_home(_isolated_home):
    assert default_database_url() == f"sqlite:///{_isolated_home / 'inference.db'}"
    store = FeeStore()
    store.add_fee(USER, PROVIDER, 1)
    assert (_isolated_home / "inference.db").exists()
    assert "inference.db" in repr(store)
    store.close()


def _bill_concurrently(stores: list[FeeStore], job_id: str, fee: int) -> list[FeeTotals | None]:
    """Each store bills ``job_id`` from its own threads at once (as concurrent polls would)."""
    results: list[FeeTotals | None] = []
    lock = threading.Lock()

    def work(s: FeeStore) -> None:
        out = s.bill_async_job(USER, PROVIDER, job_id, fee)
        with lock:
            results.append(out)

    threads = [threading.Thread(target=work, args=(s,)) for s in stores for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def check_async_job_lifecycle(url: str) -> None:
    """Shared by the SQLite and PostgreSQL tests: record → bill once → survive a restart."""
    from broker.inference.fee_store import AsyncJobStatus

    store = FeeStore(url)
    assert store.record_async_job(USER, PROVIDER, "imgjob_a", 2) is True
    assert store.record_async_job(USER.lower(), PROVIDER, "imgjob_a", 5) is False  # idempotent
    assert store.record_async_job(USER, PROVIDER, "imgjob_f", 1) is True
    job = store.get_async_job(USER, PROVIDER, "imgjob_a")
    assert (job.images, job.status, job.fee) == (2, AsyncJobStatus.PENDING, 0)
    assert store.get_totals(USER, PROVIDER) == FeeTotals(0, 0, 0)  # nothing billed yet
    with pytest.raises(ValueError):
        store.record_async_job(USER, PROVIDER, "", 1)
    with pytest.raises(ValueError):
        store.record_async_job(USER, PROVIDER, "imgjob_x", -1)
    with pytest.raises(ValueError):
        store.bill_async_job(USER, PROVIDER, "imgjob_a", -5)

    # a second engine on the same database (another serve process) and concurrent polls
    other = FeeStore(url)
    results = _bill_concurrently([store, other], "imgjob_a", 2 * 10**25)
    assert [r for r in results if r is not None] == [FeeTotals(2 * 10**25, 2 * 10**25, 1)]
    assert store.bill_async_job(USER, PROVIDER, "imgjob_a", 1) is None  # already billed
    assert store.fail_async_job(USER, PROVIDER, "imgjob_a") is False  # billed stays billed
    assert store.fail_async_job(USER, PROVIDER, "imgjob_f") is True
    assert other.fail_async_job(USER, PROVIDER, "imgjob_f") is False
    assert store.bill_async_job(USER, PROVIDER, "imgjob_f", 7) is None  # failed: never billed
    assert store.bill_async_job(USER, PROVIDER, "unknown", 7) is None  # unknown: never
    other.close()
    store.close()

    reopened = FeeStore(url)  # a restart
    assert reopened.get_totals(USER, PROVIDER) == FeeTotals(2 * 10**25, 2 * 10**25, 1)
    jobs = {j.job_id: j for j in reopened.async_jobs(USER, PROVIDER)}
    assert (jobs["imgjob_a"].status, jobs["imgjob_a"].fee) == (AsyncJobStatus.BILLED, 2 * 10**25)
    assert jobs["imgjob_f"].status is AsyncJobStatus.FAILED and jobs["imgjob_f"].fee == 0
    assert [j.job_id for j in reopened.async_jobs(USER, PROVIDER, AsyncJobStatus.FAILED)] == [
        "imgjob_f"
    ]
    assert reopened.async_jobs(USER, "0x" + "4" * 40) == []
    assert reopened.bill_async_job(USER, PROVIDER, "imgjob_a", 1) is None
    reopened.close()


def test_async_jobs_billed_once_and_durable_sqlite(tmp_path):
    check_async_job_lifecycle(f"sqlite:///{tmp_path / 'fees.db'}")


def check_disputed_fees(url: str) -> None:
    """A refused response's fee: owed (cached fee) but kept apart from the accepted total, exact
    beyond 64 bits, durable across engines; the input is checked."""
    from broker.inference.fee_store import DisputedTotals

    store = FeeStore(url)
    big = 3 * 10**30 + 1
    store.add_fee(USER, PROVIDER, 10)
    assert store.disputed_totals(USER, PROVIDER) == DisputedTotals(0, 0)
    assert store.record_disputed(
        USER, PROVIDER, "chat-1", big, "response_hash_mismatch"
    ) == DisputedTotals(1, big)
    assert store.record_disputed(
        USER.lower(), PROVIDER, None, 5, "chat_id_mismatch"
    ) == DisputedTotals(2, big + 5)
    with pytest.raises(ValueError):
        store.record_disputed(USER, PROVIDER, "x", -1, "r")
    store.close()
    reopened = FeeStore(url)
    assert reopened.disputed_totals(USER, PROVIDER) == DisputedTotals(2, big + 5)
    assert reopened.get_totals(USER, PROVIDER) == FeeTotals(10 + big + 5, 10, 1)
    assert reopened.disputed_totals(USER, "0x" + "2" * 40) == DisputedTotals(0, 0)
    reopened.close()


def test_disputed_fees_sqlite(tmp_path):
    check_disputed_fees(f"sqlite:///{tmp_path / 'inference.db'}")


def test_verification_log_pruned_periodically_not_per_insert(tmp_path):
    """Inserts do not count and prune on every call: the table may exceed the bound by fewer than
    PRUNE_EVERY rows between prunes, but readers only ever see the newest ``max_verifications``."""
    import sqlite3

    from broker.inference.fee_store import PRUNE_EVERY

    path = tmp_path / "p.db"
    store = FeeStore(f"sqlite:///{path}", max_verifications=5)
    for i in range(PRUNE_EVERY + 3):
        store.record_verification(
            USER,
            PROVIDER,
            VerificationResult(True, VerificationReason.VERIFIED, PROVIDER, f"c{i}", ""),
        )
    rows = sqlite3.connect(path).execute("SELECT COUNT(*) FROM verification_results").fetchone()[0]
    assert rows == 5 + 3  # pruned at the PRUNE_EVERY-th insert, 3 since then
    shown = [r.chat_id for r in store.recent_verifications()]
    assert shown == [f"c{i}" for i in range(PRUNE_EVERY + 2, PRUNE_EVERY - 3, -1)]
    FeeStore(f"sqlite:///{path}", max_verifications=5)  # opening prunes too
    assert (
        sqlite3.connect(path).execute("SELECT COUNT(*) FROM verification_results").fetchone()[0]
        == 5
    )


def test_sqlite_fee_store_uses_wal_with_normal_sync(tmp_path):
    store = FeeStore(f"sqlite:///{tmp_path / 'w.db'}")
    with store._engine.connect() as conn:  # the pragmas of a pooled connection
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL


_KILL_WRITER = """
import sys
from broker.inference.fee_store import FeeStore
from broker.inference.response_signature import VerificationReason, VerificationResult
store = FeeStore(sys.argv[1])
i = 0
while True:
    i += 1
    store.add_fee(sys.argv[2], sys.argv[3], 7)
    store.record_verification(sys.argv[2], sys.argv[3], VerificationResult(
        True, VerificationReason.VERIFIED, sys.argv[3], f"c{i}", ""))
    print(i, flush=True)                     # acknowledged: both commits returned
"""


def test_acknowledged_fees_survive_kill_9(tmp_path):
    """Attack: kill -9 serve's fee store mid-stream. Every fee and verification whose write had
    returned (printed) before the kill is still there; the file opens cleanly."""
    import os
    import signal
    import subprocess
    import sys
    import time

    url = f"sqlite:///{tmp_path / 'k.db'}"
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILL_WRITER, url, USER, PROVIDER],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    acked = 0
    deadline = time.monotonic() + 60
    try:
        while acked < 40 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            acked = int(line)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        for line in proc.stdout:  # acknowledged before the kill landed, not read yet
            acked = int(line)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert acked >= 40, "the writer did not get going"
    store = FeeStore(url)
    totals = store.get_totals(USER, PROVIDER)
    # the writer may have committed one more fee after its last acknowledgement, never fewer
    assert totals.request_count in (acked, acked + 1)
    assert totals.total_fee == 7 * totals.request_count
    chat_ids = {r.chat_id for r in store.recent_verifications(limit=1000)}
    assert {f"c{i}" for i in range(1, acked + 1)} <= chat_ids


def check_async_writes(url: str) -> None:
    """``aadd_fee`` / ``arecord_verification`` / ``arecord_disputed`` from one event loop, many at
    once: each returns once committed, nothing is lost, a bad fee fails alone."""
    import asyncio

    store = FeeStore(url)
    other = "0x" + "4" * 40

    async def main() -> list:
        adds = [store.aadd_fee(USER, other, 3) for _ in range(60)]
        logs = [
            store.arecord_verification(
                USER, other, VerificationResult(True, VerificationReason.VERIFIED, other, f"a{i}")
            )
            for i in range(20)
        ]
        bad = store.aadd_fee(USER, other, -1)
        disputed = store.arecord_disputed(USER, other, "d1", 5, "response_hash_mismatch")
        return await asyncio.gather(*adds, *logs, bad, disputed, return_exceptions=True)

    results = asyncio.run(main())
    totals = [r for r in results if isinstance(r, FeeTotals)]
    assert sorted(t.request_count for t in totals) == list(range(1, 61))
    assert sum(isinstance(r, ValueError) for r in results) == 1
    assert results[-1].total_fee == 5
    store.close()
    reopened = FeeStore(url)
    assert reopened.get_totals(USER, other) == FeeTotals(185, 180, 60)
    assert {f"a{i}" for i in range(20)} <= {
        r.chat_id for r in reopened.recent_verifications(100, provider=other)
    }
    reopened.close()


def check_mixed_writes_in_one_group_commit(url: str) -> None:
    """The hot Core write (``aadd_fee`` / ``arecord_exchange``) and the ORM writes of the same
    fee row (``bill_async_job``, ``set_cached_fee``) queued together: no update is lost (an ORM
    read after a Core update in the same transaction is not stale)."""
    import asyncio

    store = FeeStore(url)
    other = "0x" + "5" * 40
    jobs = [f"job-{i}" for i in range(10)]
    for job in jobs:
        store.record_async_job(USER, other, job, 1)

    async def main() -> None:
        verified = VerificationResult(True, VerificationReason.VERIFIED, other, "x1")
        await asyncio.gather(
            *(store.aadd_fee(USER, other, 2) for _ in range(40)),
            *(store.arecord_exchange(USER, other, fee=1, verification=verified) for _ in range(5)),
            *(asyncio.to_thread(store.bill_async_job, USER, other, job, 100) for job in jobs),
            store.arecord_exchange(USER, other, verification=verified),  # no fee: log only
        )

    asyncio.run(main())
    totals = store.get_totals(USER, other)
    assert (totals.total_fee, totals.request_count) == (40 * 2 + 5 + 10 * 100, 55)
    assert totals.cached_fee == totals.total_fee
    assert len([r for r in store.recent_verifications(100, provider=other)]) == 6
    with pytest.raises(ValueError):
        store.record_exchange(USER, other, fee=-1, verification=verified_result(other))
    assert len(store.recent_verifications(100, provider=other)) == 6  # nothing written
    store.close()


def verified_result(provider: str) -> VerificationResult:
    return VerificationResult(True, VerificationReason.VERIFIED, provider, "v")


def test_mixed_writes_in_one_group_commit_sqlite(tmp_path):
    check_mixed_writes_in_one_group_commit(f"sqlite:///{tmp_path / 'm.db'}")


def test_async_writes_sqlite(tmp_path):
    check_async_writes(f"sqlite:///{tmp_path / 'a.db'}")


def test_async_writes_in_memory():
    memory_store = FeeStore("sqlite://")
    import asyncio

    assert asyncio.run(memory_store.aadd_fee(USER, PROVIDER, 2)) == FeeTotals(2, 2, 1)


def test_close_drains_queued_async_writes(tmp_path):
    """Normal shutdown loses no fee: writes queued when ``close`` is called are committed first,
    and each waiting caller gets its answer."""
    import asyncio

    url = f"sqlite:///{tmp_path / 'c.db'}"
    store = FeeStore(url)

    async def main() -> list:
        tasks = [asyncio.ensure_future(store.aadd_fee(USER, PROVIDER, 1)) for _ in range(200)]
        await asyncio.sleep(0)  # every write is queued
        await asyncio.to_thread(store.close)
        return await asyncio.gather(*tasks)

    results = asyncio.run(main())
    assert max(t.request_count for t in results) == 200
    assert FeeStore(url).get_totals(USER, PROVIDER) == FeeTotals(200, 200, 200)


_KILL_ASYNC_WRITER = """
import asyncio, sys
from broker.inference.fee_store import FeeStore
from broker.inference.response_signature import VerificationReason, VerificationResult
store = FeeStore(sys.argv[1])
user, provider = sys.argv[2], sys.argv[3]

async def one(i):
    await asyncio.gather(
        store.aadd_fee(user, provider, 7),
        store.arecord_verification(user, provider, VerificationResult(
            True, VerificationReason.VERIFIED, provider, f"c{i}", "")),
    )
    print(i, flush=True)                     # acknowledged: both commits returned

async def main():
    i = 0
    while True:                              # 8 requests in flight, as serve under load
        await asyncio.gather(*(one(i + k) for k in range(1, 9)))
        i += 8

asyncio.run(main())
"""


def test_acknowledged_async_fees_survive_kill_9(tmp_path):
    """Attack: kill -9 while serve's event loop has many fee writes in flight. Every fee and
    verification acknowledged (printed) before the kill is in the file; at most the writes in
    flight (8 here) were committed without their acknowledgement reaching the caller."""
    import os
    import signal
    import subprocess
    import sys
    import time

    url = f"sqlite:///{tmp_path / 'ka.db'}"
    proc = subprocess.Popen(
        [sys.executable, "-c", _KILL_ASYNC_WRITER, url, USER, PROVIDER],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    acked: set[int] = set()
    deadline = time.monotonic() + 60
    try:
        while len(acked) < 80 and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            acked.add(int(line))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        acked.update(int(line) for line in proc.stdout)  # printed before the kill landed
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(acked) >= 80, "the writer did not get going"
    store = FeeStore(url)
    totals = store.get_totals(USER, PROVIDER)
    assert len(acked) <= totals.request_count <= len(acked) + 8
    assert totals.total_fee == 7 * totals.request_count
    chat_ids = {r.chat_id for r in store.recent_verifications(limit=1000)}
    assert {f"c{i}" for i in acked} <= chat_ids
