"""State that belongs to one chain stays with it: after a devnet is replaced by a new one (same
chain id, same contract addresses), the user's fee store and the devnet provider's gateway database
start empty, so nothing is over-funded or shown for fees never incurred on the new chain. Also the
library's devnet key fallback (the README's ``create_broker(network="devnet")``)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from eth_account import Account

OG = 10**18


@pytest.fixture()
def home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("ZG_HOME", str(home))
    for var in ("ZG_PRIVATE_KEY", "ZG_KEYSTORE_PASSWORD", "ZG_NETWORK", "ZG_RPC_URL"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.mark.timeout(180)
def test_fees_do_not_leak_into_a_new_devnet(home, caplog):
    from broker import create_broker
    from broker.devnet import start_devnet
    from broker.stacks.provider_stack import gateway_db_name

    state_file = home / "devnet" / "state.json"
    provider = Account.create().address
    seen = []
    for _ in range(2):  # devnet up, down, up again
        with start_devnet(port=0, state_file=state_file) as net:
            with caplog.at_level(logging.WARNING, logger="broker.broker"):
                b = create_broker(network="devnet")  # no key configured: the dev account
            assert b.address == net.state.accounts[0].address
            assert f"using devnet dev account {b.address}" in caplog.text
            try:
                totals = b.inference.fee_store.get_totals(b.address, provider)
                seen.append((b.state_dir, gateway_db_name(net.state), totals.total_fee))
                b.inference.fee_store.add_fee(b.address, provider, 5 * OG)  # unsettled here
                assert b.state_dir.parent == home / "chains"
                assert (b.state_dir / "fees.sqlite").exists()
                assert b.state_dir.name.startswith(f"devnet-31337-{net.state.ledger_address[:10]}")
            finally:
                b.inference.close()
    (dir_a, gw_a, fee_a), (dir_b, gw_b, fee_b) = seen
    assert fee_a == 0 and fee_b == 0  # the old chain's 5 0G did not follow
    assert dir_a != dir_b and gw_a != gw_b
    assert (dir_a / "fees.sqlite").exists()  # the old chain's record is kept apart


def _register_dev_provider(state) -> str:
    """Register a chatbot service (unreachable URL) from dev account 1: the same provider address
    on every devnet."""
    import json

    from web3 import Web3

    from broker.chain.contracts import InferenceServingContract
    from broker.chain.keys import wallet_from_key
    from broker.chain.sender import TransactionSender

    wallet = wallet_from_key(state.accounts[1].private_key.get_secret_value())
    w3 = Web3(Web3.HTTPProvider(state.rpc_url))
    contract = InferenceServingContract(w3, state.inference_address, TransactionSender(w3, wallet))
    contract.add_or_update_service(
        (
            "chatbot",
            "http://127.0.0.1:9",
            "m",
            "TeeML",
            1,
            1,
            json.dumps({"ProviderType": "decentralized"}),
            wallet.address,
        ),
        value=100 * OG,
    )
    return wallet.address


@pytest.mark.timeout(180)
def test_serve_funding_does_not_count_an_old_devnets_fees(home):
    """The start-up funding cycle of serve (the provider unreachable: the cached fee decides) funds
    a new devnet's sub-account for this chain's fees only: 2 0G (the buffer), not 5 + 2."""
    from broker import create_broker
    from broker.devnet import start_devnet

    state_file = home / "devnet" / "state.json"
    transferred = []
    for old_fee in (5 * OG, 0):
        with start_devnet(port=0, state_file=state_file) as net:
            provider = _register_dev_provider(net.state)
            b = create_broker(network="devnet")
            try:
                b.ledger.deposit_fund("10")
                status = b.inference.funding_checker.check(provider, 2)
                transferred.append(status.last_transfer_amount)
                if old_fee:  # unsettled on this chain when it goes down
                    b.inference.fee_store.set_cached_fee(b.address, provider, old_fee)
            finally:
                b.inference.close()
    assert transferred == [2 * OG, 2 * OG]


def test_explicit_key_wins_over_the_devnet_fallback(home, devnet, fresh_account, caplog):
    from broker import create_broker
    from broker.devnet.state import write_state

    write_state(devnet, home / "devnet" / "state.json")
    with caplog.at_level(logging.WARNING, logger="broker.broker"):
        b = create_broker("0x" + bytes(fresh_account.key).hex(), network="devnet")
    assert b.address == fresh_account.address and "dev account" not in caplog.text
    b.inference.close()
