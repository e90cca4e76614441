"""Attacks on the end of auto-funding: a broker closed while a scheduled cycle is retrying a failing
provider, or while ``start_auto_funding`` is still in its first cycle, must leave no auto-funding
thread behind, run no further check and move no money once ``close()`` has returned (a scheduler
that outlives its broker keeps polling a provider and a chain that may be gone, and could still
send a transfer)."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from funding_helpers import OG, funding_threads, locked, wait_for

from broker.funding import FundingClosedError, RetryPolicy
from broker.inference.broker import NoFunding

pytestmark = pytest.mark.timeout(120)


def _funding_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name.startswith("broker.funding")]


def test_close_stops_a_retrying_cycle_and_leaves_no_thread(
    make_user, funding_provider, fee_server, caplog
):
    inf = make_user(funding=NoFunding())
    provider, user = funding_provider, inf.address
    fee_server.fees[user] = 0
    inf.start_auto_funding(provider, interval=0.2)  # the first cycle finds 5 0G locked: funded
    # the provider starts failing, and the cached fee says a 7 0G top-up is due once the retries
    # give up (required 10 + 2 = 12 0G, locked 5 0G): a cycle that outlives close() would send it
    inf.funding_checker.retry = RetryPolicy(attempts=40, backoff_s=0.1, max_backoff_s=0.1)
    inf.fee_store.set_cached_fee(user, provider, 10 * OG)
    fee_server.status[user] = 503
    hits = fee_server.hits[user]
    assert wait_for(lambda: fee_server.hits[user] >= hits + 2, 10)  # a cycle is retrying
    checks = inf.auto_funding_status(provider).checks
    caplog.set_level(logging.INFO, logger="broker.funding")
    caplog.clear()

    started = time.monotonic()
    inf.close()
    assert time.monotonic() - started < 2  # the retry wait was cut short, not sat out
    assert not funding_threads(), funding_threads()  # nothing left once close() returned
    hits_after = fee_server.hits[user]
    time.sleep(1.0)  # five intervals and ten retry delays
    assert not funding_threads(), funding_threads()
    assert fee_server.hits[user] == hits_after  # no further request to the provider
    status = inf.auto_funding_status(provider)
    assert status.checks == checks and not status.running  # the cut-short cycle is not counted
    assert status.transfers == 0 and locked(inf, provider) == 5 * OG  # no money moved
    assert not [r for r in _funding_records(caplog) if r.levelno >= logging.WARNING], [
        r.getMessage() for r in _funding_records(caplog)
    ]


def test_close_during_start_leaves_no_scheduler(make_user, funding_provider, fee_server):
    inf = make_user(funding=NoFunding())
    provider, user = funding_provider, inf.address
    fee_server.fees[user] = 0
    fee_server.delay = 1.0  # the first cycle (in start_auto_funding) waits on the provider
    outcome: list[object] = []

    def start() -> None:
        try:
            outcome.append(inf.start_auto_funding(provider, interval=0.2))
        except Exception as exc:  # noqa: BLE001 - the outcome is asserted below
            outcome.append(exc)

    try:
        starter = threading.Thread(target=start)
        starter.start()
        assert wait_for(lambda: fee_server.hits.get(user, 0) >= 1, 5)  # first cycle in flight
        inf.close()
        starter.join(10)
    finally:
        fee_server.delay = 0.0
    assert not starter.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], FundingClosedError), outcome
    assert "closed" in str(outcome[0])
    time.sleep(0.8)  # four intervals
    assert not funding_threads(), funding_threads()
    assert fee_server.hits[user] == 1  # no scheduled cycle ever ran
    assert not inf.auto_funding_status(provider).running


def test_closed_broker_refuses_to_start_and_checks_nothing(make_user, funding_provider, fee_server):
    inf = make_user()  # the default inline strategy
    provider, user = funding_provider, inf.address
    inf.close()
    with pytest.raises(FundingClosedError, match="closed"):
        inf.start_auto_funding(provider, interval=0.2)
    status = inf.funding_checker.check(provider)
    assert status.checks == 0 and fee_server.hits.get(user, 0) == 0
    assert not funding_threads(), funding_threads()


def test_close_with_a_timeout_during_a_slow_request(make_user, funding_provider, fee_server):
    """A cycle stuck in a slow ``/unsettledfee`` request: ``close(timeout)`` gives up waiting
    (returns False, leaves the HTTP client to that request), and the cycle stops right after the
    request, before reading the chain or transferring; it is not counted."""
    inf = make_user(funding=NoFunding())
    provider, user = funding_provider, inf.address
    checker = inf.funding_checker
    fee_server.fees[user] = 20 * OG  # a 17 0G top-up would be due (required 22, locked 5)
    fee_server.delay = 1.0
    try:
        cycle = threading.Thread(target=checker.check, args=(provider,))
        cycle.start()
        assert wait_for(lambda: fee_server.hits.get(user, 0) >= 1, 5)  # in the request
        started = time.monotonic()
        assert checker.close(timeout=0.2) is False
        assert 0.2 <= time.monotonic() - started < 0.9
        cycle.join(10)
    finally:
        fee_server.delay = 0.0
    assert not cycle.is_alive()
    status = checker.status(provider)
    assert (status.checks, status.transfers) == (0, 0) and fee_server.hits[user] == 1
    assert locked(inf, provider) == 5 * OG
    assert checker.close(timeout=0.2) is True  # nothing in flight any more: closes its client


def test_scheduler_shutdown_waits_for_the_cycle_in_flight(make_user, funding_provider, fee_server):
    """Without closing the checker, ``FundingScheduler.shutdown()`` lets the cycle in flight finish
    (it is counted) and returns only once its worker thread is gone; ``shutdown(wait=False)``
    would return at once."""
    from broker.funding import FundingScheduler

    inf = make_user(funding=NoFunding())
    provider, user = funding_provider, inf.address
    scheduler = FundingScheduler(inf.funding_checker)
    fee_server.fees[user] = 0
    fee_server.delay = 0.8
    try:
        scheduler.start(provider, interval=0.2, run_immediately=False)
        assert wait_for(lambda: fee_server.hits.get(user, 0) >= 1, 5)  # a cycle in a worker
        names = sorted(t.name for t in funding_threads())
        assert names == [scheduler.thread_name, scheduler.thread_name + "_0"]
        started = time.monotonic()
        scheduler.shutdown()
        assert time.monotonic() - started >= 0.3  # it waited for the request to be answered
        assert not funding_threads(), funding_threads()
    finally:
        fee_server.delay = 0.0
        scheduler.shutdown(wait=False)  # (a no-op unless an assertion above failed)
    status = inf.auto_funding_status(provider)
    assert status.checks == 1 and status.last_error is None and not status.running
    assert fee_server.hits[user] == 1
