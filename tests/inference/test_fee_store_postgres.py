"""The user-side fee store on PostgreSQL (the session's throw-away server,
``tests/helpers/postgres_helpers.py``): exact amounts beyond 64 bits, millisecond timestamps,
persistence across engines, and no lost update when two engines (as two processes would) add
concurrently."""

from __future__ import annotations

import threading
import time

from broker.inference.fee_store import FeeStore, FeeTotals
from broker.inference.response_signature import VerificationReason, VerificationResult

USER = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
PROVIDER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


def test_fee_store_on_postgres(postgres_url):
    store = FeeStore(postgres_url)
    assert "postgresql" in repr(store)
    big = 3 * 10**30 + 7  # far beyond 64-bit integers
    store.add_fee(USER, PROVIDER, big)
    assert store.add_fee(USER.lower(), PROVIDER, 5) == FeeTotals(big + 5, big + 5, 2)
    store.set_cached_fee(USER, PROVIDER, 0)
    now_ms = int(time.time() * 1000)  # does not fit PostgreSQL's 32-bit INTEGER
    store.record_issued_token(USER, PROVIDER, 0, 1, now_ms, now_ms + 86_400_000)
    store.record_issued_token(USER, PROVIDER, 0, 1, now_ms, now_ms + 86_400_000)  # idempotent
    store.record_verification(
        USER, PROVIDER, VerificationResult(True, VerificationReason.VERIFIED, PROVIDER, "c1", "ok")
    )

    # two more engines on the same database, as two other processes would: no update is lost
    others = [FeeStore(postgres_url), FeeStore(postgres_url)]

    def work(s: FeeStore) -> None:
        for _ in range(20):
            s.add_fee(USER, PROVIDER, 3)
            s.add_fee(USER, "0x" + "3" * 40, 1)  # a row created concurrently by all engines

    threads = [threading.Thread(target=work, args=(s,)) for s in (store, *others, *others)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for s in others:
        s.close()
    store.close()

    reopened = FeeStore(postgres_url)  # a restart
    assert reopened.get_totals(USER, PROVIDER) == FeeTotals(300, big + 5 + 300, 102)
    assert reopened.get_totals(USER, "0x" + "3" * 40) == FeeTotals(100, 100, 100)
    assert reopened.issued_token_ids(USER, PROVIDER, 0) == {1}
    [rec] = reopened.recent_verifications()
    assert (rec.verified, rec.reason, rec.chat_id) == (True, VerificationReason.VERIFIED, "c1")
    reopened.close()


def test_async_jobs_billed_once_and_durable_postgres(postgres_url):
    from test_fee_store import check_async_job_lifecycle

    check_async_job_lifecycle(postgres_url)


def test_disputed_fees_postgres(postgres_url):
    from test_fee_store import check_disputed_fees

    check_disputed_fees(postgres_url)


def test_async_writes_postgres(postgres_url):
    from test_fee_store import check_async_writes

    check_async_writes(postgres_url)


def test_mixed_writes_postgres(postgres_url):
    from test_fee_store import check_mixed_writes_in_one_group_commit

    check_mixed_writes_in_one_group_commit(postgres_url)
