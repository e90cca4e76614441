"""A restart keeps the fee totals: a new InferenceBroker on the same SQLite file sees the fees the
previous one recorded, and its funding cycle falls back to that persisted fee when the provider has
no ``/unsettledfee`` (devnet + loopback fake provider)."""

from __future__ import annotations

import pytest
from devnet_helpers import funded_user_broker, register_chatbot_service

from broker.inference.broker import InferenceBroker, NoFunding
from broker.inference.fee_store import FeeStore

pytestmark = pytest.mark.timeout(120)

OG = 10**18
PRICE = 10**15  # neuron per token: 2000 + 2000 tokens = 4 0G


def test_new_broker_on_same_database_keeps_fees(devnet, fake_provider, tmp_path):
    provider = register_chatbot_service(
        devnet,
        fake_provider.url,
        model="m",
        input_price=PRICE,
        output_price=PRICE,
        tee_address="0x325744be57db298C2652c672B32Eb12875d92D83",
    )
    base = funded_user_broker(devnet, ledger="20", amount_neuron=100 * OG)
    base.ledger.transfer_fund(provider.address, "inference", "5")
    url = f"sqlite:///{tmp_path / 'inference.db'}"

    first = InferenceBroker.from_broker(base, fee_store=FeeStore(url), funding=NoFunding())
    usage = {"prompt_tokens": 2000, "completion_tokens": 2000}
    assert first.process_response(provider.address, None, usage) is None
    totals = first.fee_store.get_totals(base.address, provider.address)
    assert (totals.cached_fee, totals.total_fee, totals.request_count) == (4 * OG, 4 * OG, 1)
    first.close()

    second = InferenceBroker.from_broker(base, fee_store=FeeStore(url), funding=NoFunding())
    assert second.fee_store.get_totals(base.address, provider.address) == totals
    # the provider answers 404 for /unsettledfee: the cycle uses the persisted fee (4 + 2 > 5)
    status = second.funding_checker.check(provider.address)
    assert (status.unsettled_fee, status.unsettled_fee_source) == (4 * OG, "cached")
    assert status.last_error is None and status.transfers == 1
    assert status.last_transfer_amount == OG
    after = second.fee_store.get_totals(base.address, provider.address)
    assert (after.cached_fee, after.total_fee) == (
        0,
        4 * OG,
    )  # reset after the top-up, like the SDK
    second.close()
