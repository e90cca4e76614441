"""Auto-funding against the REAL provider gateway (issue 3): the devnet provider stack (tiny Z-Image
worker + gateway, registered and acknowledged on chain) plays ``/unsettledfee`` and bills images;
our broker keeps the sub-account funded, and stops topping up once the gateway settled.

Numbers (0.5 0G per image, buffer 3 × 1 0G, locked 4 0G): one image (unsettled 0.5, required 3.5)
needs no transfer; a request for 4 more images (unsettled 2.5, required 5.5) makes a deficit of 1.5
0G, topped up within one 1-second interval; the gateway's own low-balance trigger stays quiet
(locked − unsettled ≥ 1 0G at every request), so the settlement below is the only one.
"""

from __future__ import annotations

import time

import httpx
import pytest
from devnet_helpers import devnet_user_broker, provider_stack
from funding_helpers import OG, funding_threads, locked, wait_for

from broker.funding import FundingEvent

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

PRICE = OG // 2  # 0.5 0G per image
BUFFER = 3  # 0G kept above the unsettled fee
IMAGE = {
    "model": "tiny",
    "prompt": "a red cube",
    "n": 1,
    "size": "32x32",
    "num_inference_steps": 1,
    "seed": 7,
}


@pytest.fixture(scope="module")
def stack(devnet, tmp_path_factory):
    """One in-process provider stack for the module, with raised gateway limits."""
    with provider_stack(
        devnet, tmp_path_factory.mktemp("funding-stack"), price_per_image=PRICE, raise_limits=True
    ) as st:
        yield st


def test_auto_funding_tops_up_against_the_gateway(stack, devnet, fresh_account):
    broker = devnet_user_broker(devnet, fresh_account)
    inf, provider, gw = broker.inference, stack.provider_address, stack.gateway
    broker.ledger.add_ledger("20")
    assert inf.acknowledge_provider_signer(provider).sub_account_created  # 1 0G
    broker.ledger.transfer_fund(provider, "inference", "3")  # locked 4 0G
    events: list[FundingEvent] = []
    inf.add_funding_listener(events.append)

    def generate(n: int) -> None:
        r = httpx.post(
            stack.gateway_url + "/v1/proxy/images/generations",
            json={**IMAGE, "n": n},
            timeout=120,
            headers=inf.get_request_headers(provider),
        )
        assert r.status_code == 200, r.text
        assert len(r.json()["data"]) == n

    try:
        status = inf.start_auto_funding(provider, interval=1, buffer_multiplier=BUFFER)
        assert status.running and status.transfers == 0 and status.locked_balance == 4 * OG
        generate(1)  # unsettled 0.5: required 3.5 <= 4
        assert gw.ledger.unsettled_fee(fresh_account.address) == PRICE
        checks = inf.auto_funding_status(provider).checks
        assert wait_for(lambda: inf.auto_funding_status(provider).checks >= checks + 2, 5)
        status = inf.auto_funding_status(provider)
        assert (status.transfers, status.last_error) == (0, None)
        assert (status.unsettled_fee, status.unsettled_fee_source) == (PRICE, "provider")
        assert locked(inf, provider) == 4 * OG

        generate(4)  # unsettled 2.5: required 5.5 > 4
        billed_at = time.monotonic()
        unsettled = gw.ledger.unsettled_fee(fresh_account.address)
        assert unsettled == 5 * PRICE
        assert wait_for(lambda: inf.auto_funding_status(provider).transfers == 1, 5)
        assert time.monotonic() - billed_at < 2.5  # within one interval (+ slack)
        deficit = unsettled + BUFFER * OG - 4 * OG
        status = inf.auto_funding_status(provider)
        assert status.last_transfer_amount == max(deficit, OG) == 15 * OG // 10
        assert status.last_transfer_at is not None and status.unsettled_fee == unsettled
        assert locked(inf, provider) == 55 * OG // 10 >= unsettled + BUFFER * OG
        assert [e.amount for e in events if e.kind == "transfer"] == [15 * OG // 10]

        # the gateway settles (directly, as the provider tests do): the fee returns to 0
        report = gw.settler.settle_once()
        assert report.settled[fresh_account.address] == unsettled
        assert gw.ledger.unsettled_fee(fresh_account.address) == 0
        assert locked(inf, provider) == 3 * OG  # 5.5 − 2.5 = 0 + buffer
        checks = inf.auto_funding_status(provider).checks
        assert wait_for(lambda: inf.auto_funding_status(provider).checks >= checks + 2, 5)
        status = inf.auto_funding_status(provider)
        assert status.transfers == 1 and status.unsettled_fee == 0 and status.last_error is None
        assert locked(inf, provider) == 3 * OG  # no further transfer
    finally:
        inf.stop_auto_funding(provider)
    assert not inf.auto_funding_status(provider).running
    # (the gateway's settlement scheduler is an APScheduler thread too: only ours must be gone)
    assert wait_for(lambda: not [t for t in funding_threads() if t.name != "APScheduler"], 3)
    checks = inf.auto_funding_status(provider).checks
    time.sleep(1.3)
    assert inf.auto_funding_status(provider).checks == checks  # really stopped
