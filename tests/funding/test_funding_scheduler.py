"""Auto-funding against the devnet (anvil + our contracts) and a loopback FastAPI provider that
serves ``/unsettledfee``: no transfer while funded, a top-up within one interval after the fee
grows, one transfer for concurrent checks, bounded retries on HTTP failure, clean stop, the inline
path."""

from __future__ import annotations

import threading
import time

import pytest
from funding_helpers import OG, funding_threads, locked, wait_for

from broker.funding import FundingConfigError, FundingEvent, InlineFunding
from broker.inference.broker import NoFunding

pytestmark = pytest.mark.timeout(120)


def test_scheduler_keeps_funded_account_and_tops_up_within_one_interval(
    make_user, funding_provider, fee_server
):
    inf = make_user(funding=NoFunding())
    provider = funding_provider
    events: list[FundingEvent] = []
    inf.add_funding_listener(events.append)
    fee_server.fees[inf.address] = 2 * OG  # required 4 0G, locked 5 0G

    status = inf.start_auto_funding(provider, interval=1)
    assert status.running and status.interval == 1.0 and status.checks == 1
    assert wait_for(lambda: inf.auto_funding_status(provider).checks >= 3, 5)
    status = inf.auto_funding_status(provider)
    assert status.transfers == 0 and status.last_error is None
    assert (status.unsettled_fee, status.unsettled_fee_source) == (2 * OG, "provider")
    assert status.locked_balance == locked(inf, provider) == 5 * OG
    assert {e.kind for e in events} == {"check"} and all(e.amount == 0 for e in events)
    # the fetched fee became the cached fee of the fee store
    assert inf.fee_store.get_cached_fee(inf.address, provider) == 2 * OG

    # the fee grows: required 4.5 + 2 = 6.5 0G, deficit 1.5 0G, within one interval (+ slack)
    fee_server.fees[inf.address] = 45 * 10**17
    raised_at = time.monotonic()
    assert wait_for(lambda: inf.auto_funding_status(provider).transfers == 1, 3)
    assert time.monotonic() - raised_at < 2.5
    status = inf.auto_funding_status(provider)
    assert status.last_transfer_amount == 15 * 10**17 and status.last_transfer_at is not None
    assert locked(inf, provider) == 65 * 10**17 >= 45 * 10**17 + 2 * OG
    transfers = [e for e in events if e.kind == "transfer"]
    assert len(transfers) == 1 and transfers[0].amount == 15 * 10**17
    assert inf.fee_store.get_cached_fee(inf.address, provider) in (0, 45 * 10**17)

    # a deficit below 1 0G is topped up by exactly 1 0G
    fee_server.fees[inf.address] = 45 * 10**17 + 1
    assert wait_for(lambda: inf.auto_funding_status(provider).transfers == 2, 3)
    assert inf.auto_funding_status(provider).last_transfer_amount == OG
    assert locked(inf, provider) == 75 * 10**17

    inf.stop_auto_funding(provider)
    assert not inf.auto_funding_status(provider).running
    assert wait_for(lambda: not funding_threads(), 3), funding_threads()
    checks = inf.auto_funding_status(provider).checks
    time.sleep(1.3)
    assert inf.auto_funding_status(provider).checks == checks  # really stopped


def test_concurrent_checks_make_one_transfer(make_user, funding_provider, fee_server):
    inf = make_user(funding=NoFunding())
    provider = funding_provider
    fee_server.fees[inf.address] = 5 * OG  # required 7, locked 5 -> deficit 2 0G
    fee_server.delay = 0.3  # both checks are in flight together
    barrier = threading.Barrier(4)
    results = []

    def run() -> None:
        barrier.wait()
        results.append(inf.funding_checker.check(provider))

    try:
        threads = [threading.Thread(target=run) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        fee_server.delay = 0.0
    assert len(results) == 4
    assert inf.auto_funding_status(provider).transfers == 1
    assert locked(inf, provider) == 7 * OG
    assert fee_server.hits[inf.address] == 1  # single flight: one cycle, one HTTP request
    # a later check finds the account funded
    assert inf.funding_checker.check(provider).transfers == 1


def test_http_failure_retries_with_backoff_and_records_error(
    make_user, funding_provider, fee_server
):
    inf = make_user(funding=NoFunding())
    provider = funding_provider
    inf.fee_store.set_cached_fee(inf.address, provider, OG)  # 1 + 2 = 3 0G <= 5 locked
    fee_server.status[inf.address] = 503
    events: list[FundingEvent] = []
    inf.add_funding_listener(events.append)
    started = time.monotonic()
    status = inf.funding_checker.check(provider)
    assert time.monotonic() - started >= 0.05 + 0.1  # backoff 0.05 s, then 0.1 s
    assert fee_server.hits[inf.address] == 3  # bounded: 3 attempts
    assert status.last_error and "HTTP 503" in status.last_error
    assert (status.unsettled_fee, status.unsettled_fee_source) == (OG, "cached")
    assert status.transfers == 0 and locked(inf, provider) == 5 * OG
    assert [e.kind for e in events] == ["error", "check"]
    assert "Bearer" not in status.last_error and "app-sk" not in status.last_error
    # recovery clears the error
    del fee_server.status[inf.address]
    status = inf.funding_checker.check(provider)
    assert status.last_error is None and status.unsettled_fee_source == "provider"


def test_inline_funding_in_request_headers(make_user, funding_provider, fee_server):
    inf = make_user(funding=InlineFunding(min_interval_s=60))
    provider = funding_provider
    fee_server.fees[inf.address] = 4 * OG  # required 6, locked 5 -> transfer 1 0G
    headers = inf.get_request_headers(provider)
    assert headers["Authorization"].startswith("Bearer app-sk-")
    status = inf.auto_funding_status(provider)
    assert (status.checks, status.transfers, status.last_transfer_amount) == (1, 1, OG)
    assert locked(inf, provider) == 6 * OG
    # rate-limited: the next request within min_interval_s does not poll the provider
    hits = fee_server.hits[inf.address]
    fee_server.fees[inf.address] = 10 * OG
    inf.get_request_headers(provider)
    assert fee_server.hits[inf.address] == hits and inf.auto_funding_status(provider).checks == 1

    # while a scheduler job runs, the inline path is skipped
    inf.funding = InlineFunding(min_interval_s=0)
    inf.start_auto_funding(provider, interval=30)
    checks = inf.auto_funding_status(provider).checks
    assert locked(inf, provider) == 12 * OG
    inf.get_request_headers(provider)
    assert inf.auto_funding_status(provider).checks == checks
    inf.close()
    assert wait_for(lambda: not funding_threads(), 3), funding_threads()


def test_inline_funding_does_not_create_sub_accounts(make_user, funding_provider):
    inf = make_user(sub_account=None)
    provider = funding_provider
    assert isinstance(inf.funding, InlineFunding)  # the default strategy
    with pytest.raises(Exception, match="not acknowledged"):
        inf.get_request_headers(provider)
    status = inf.auto_funding_status(provider)
    assert status.checks == 1 and status.transfers == 0 and status.locked_balance is None
    assert inf.ledger.get_ledger().total_balance == 20 * OG  # nothing spent


def test_start_validates_arguments(make_user, funding_provider):
    inf = make_user(sub_account=None, funding=NoFunding())
    for bad in ({"interval": 0}, {"interval": True}, {"buffer_multiplier": 0.5}):
        with pytest.raises(FundingConfigError):
            inf.start_auto_funding(funding_provider, **bad)
    assert not funding_threads()
