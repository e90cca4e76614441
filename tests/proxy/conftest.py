"""Proxy test fixtures: one devnet provider stack (tiny worker + gateway + fake chat backend) and
one ``serve`` per module; a funded user with a ledger."""

from __future__ import annotations

import pytest
from devnet_helpers import funded_user_broker, provider_stack
from proxy_helpers import ThreadServer, fake_llm_app

ZG = 10**18


@pytest.fixture(scope="module")
def stack(devnet, tmp_path_factory):
    """A running provider stack (in-process) with raised gateway limits; yields
    ``(stack, fake_backend_url)``."""
    with (
        ThreadServer(fake_llm_app(chunk_delay=0.3)) as backend,
        provider_stack(
            devnet,
            tmp_path_factory.mktemp("stack"),
            model="tiny",
            chat_backend_url=backend,
            raise_limits=True,
        ) as st,
    ):
        yield st, backend


@pytest.fixture(scope="module")
def user_broker(devnet, stack):
    """A broker for a fresh account with a 10 0G ledger."""
    broker = funded_user_broker(devnet, ledger=10, amount_neuron=100 * ZG)
    yield broker
    broker.inference.close()
