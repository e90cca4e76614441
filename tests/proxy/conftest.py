"""Proxy test fixtures: one devnet provider stack (tiny worker + gateway + fake chat backend) and one
``serve`` per module; a funded user with a ledger."""

from __future__ import annotations

import pytest
from proxy_helpers import ThreadServer, fake_llm_app

ZG = 10**18


@pytest.fixture(scope="module")
def stack(devnet, tmp_path_factory):
    """A running provider stack (in-process) with raised gateway limits; yields
    ``(stack, fake_backend_url)``."""
    from broker.devnet import fund_new_account
    from broker.devnet.stack import start_provider_stack
    from broker.provider.limits import Limits

    provider = fund_new_account(devnet, amount_neuron=1000 * ZG)
    key = "0x" + bytes(provider.key).hex()
    with ThreadServer(fake_llm_app(chunk_delay=0.3)) as backend, \
            start_provider_stack(devnet, model="tiny", provider_key=key, chat_backend_url=backend,
                                 home=tmp_path_factory.mktemp("stack")) as st:
        st.gateway.limits = Limits(per_ip_rps=1000, per_ip_burst=1000, per_user_rpm=100000,
                                   per_user_burst=1000, max_per_user_concurrent=100,
                                   max_global_concurrent=200)
        yield st, backend


@pytest.fixture(scope="module")
def user_broker(devnet, stack):
    """A broker for a fresh account with a 10 0G ledger."""
    from broker.broker import create_broker
    from broker.devnet import fund_new_account

    account = fund_new_account(devnet, amount_neuron=100 * ZG)
    broker = create_broker("0x" + bytes(account.key).hex(), network="devnet",
                           rpc_url=devnet.rpc_url, ledger_address=devnet.ledger_address,
                           inference_address=devnet.inference_address)
    broker.ledger.add_ledger(10)
    yield broker
    broker.inference.close()
