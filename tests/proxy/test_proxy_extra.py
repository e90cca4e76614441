"""End to end: the real gateway's balance refusal (provider-gateway.md B4.5) reaches the ``openai``
client through ``serve`` as 402 ``insufficient_quota``, and nothing is billed.

A provider stack on the devnet bills 2.5 0G per request. The user's ledger holds exactly 3 0G, all
of it in the provider's sub-account, and ``serve`` runs with auto-funding off. The first request is
served and settled on chain (locked balance 0.5 0G, ledger empty); the second one is below the
gateway's 1 0G minimum reserve and the ledger has nothing left to top it up with."""

from __future__ import annotations

import openai
import pytest
from devnet_helpers import funded_user_broker, provider_stack
from proxy_helpers import ThreadServer, fake_llm_app

from broker.proxy import ServeSettings, create_app

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ZG = 10**18
PRICE = 25 * ZG // 10
API_KEY = "sk-local-extra"


@pytest.fixture(scope="module")
def costly_stack(devnet, tmp_path_factory):
    """A provider stack whose service costs 2.5 0G per request (raised gateway limits)."""
    with (
        ThreadServer(fake_llm_app()) as backend,
        provider_stack(
            devnet,
            tmp_path_factory.mktemp("costly"),
            model="tiny",
            chat_backend_url=backend,
            price_per_image=PRICE,
            raise_limits=True,
        ) as st,
    ):
        yield st


@pytest.fixture(scope="module")
def poor_user(devnet, costly_stack):
    """A broker whose 3 0G ledger is entirely in the provider's sub-account."""
    broker = funded_user_broker(devnet, ledger=3, amount_neuron=100 * ZG)
    broker.ledger.transfer_fund(costly_stack.provider_address, "inference", 3)
    yield broker
    broker.inference.close()


def _fees(stack, user) -> tuple[int, int]:
    """(local recorded fee, gateway unsettled fee) of ``user`` for the stack's provider, neuron."""
    local = user.inference.fee_store.get_totals(user.address, stack.provider_address).total_fee
    return local, stack.gateway.ledger.unsettled_fee(user.address)


def test_gateway_balance_refusal_is_402_insufficient_quota(costly_stack, poor_user):
    st, user = costly_stack, poor_user
    assert st.service.output_price == PRICE
    settings = ServeSettings(
        provider=st.provider_address, api_key=API_KEY, auto_funding=False, extra_routes=True
    )
    with ThreadServer(create_app(user, settings)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=API_KEY, max_retries=0, timeout=120)
        messages = [{"role": "user", "content": "hi"}]
        # 3 0G locked >= 1 0G reserve: served and billed 2.5 0G on both sides
        assert client.chat.completions.create(model="tiny", messages=messages).choices
        assert _fees(st, user) == (PRICE, PRICE)
        # the provider settles it: 0.5 0G left in the sub-account, the ledger is empty
        report = st.gateway.settler.settle_once()
        assert report.outstanding == 0
        acc = user.inference_contract.get_account(user.address, st.provider_address)
        assert acc.locked_balance == 3 * ZG - PRICE
        ledger = user.ledger.get_ledger()
        assert (ledger.total_balance, ledger.available_balance) == (3 * ZG - PRICE, 0)
        before = _fees(st, user)
        assert before[1] == 0
        nonce = user.w3.eth.get_transaction_count(user.address, "pending")

        with pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(model="tiny", messages=messages)
        assert info.value.status_code == 402
        assert info.value.body["type"] == "insufficient_quota"
        assert info.value.body["code"] == "insufficient_balance"
        # the gateway's own B4.5 text, with the real numbers
        assert "insufficient balance: your locked balance is 0.5 0G" in info.value.body["message"]

        # nothing billed locally or at the gateway, nothing settled, no money moved
        assert _fees(st, user) == before
        acc = user.inference_contract.get_account(user.address, st.provider_address)
        assert acc.locked_balance == 3 * ZG - PRICE
        assert user.ledger.get_ledger().total_balance == 3 * ZG - PRICE
        assert user.w3.eth.get_transaction_count(user.address, "pending") == nonce
