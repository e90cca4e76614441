"""Fixtures for chain-level tests: brokers and senders on the session devnet."""

from __future__ import annotations

import pytest


def _key_hex(account) -> str:
    return "0x" + bytes(account.key).hex()


@pytest.fixture()
def make_broker(devnet):
    """``make_broker(account, **overrides)`` → a :class:`broker.broker.Broker` on the devnet."""
    from broker.broker import create_broker

    def make(account, **kwargs):
        params = {
            "network": "devnet",
            "rpc_url": devnet.rpc_url,
            "ledger_address": devnet.ledger_address,
            "inference_address": devnet.inference_address,
            **kwargs,
        }
        return create_broker(_key_hex(account), **params)

    return make


@pytest.fixture()
def funded_broker(make_broker, fresh_account):
    """A broker for a fresh account holding 1000 0G (no ledger yet)."""
    return make_broker(fresh_account)
