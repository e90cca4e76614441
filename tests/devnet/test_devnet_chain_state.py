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
    from broker.devnet.stack import gateway_db_name

    state_file = home / "devnet" / "state.json"
    provider = Account.create().address
    seen = []
    for _ in range(2):                                   # devnet up, down, up again
        with start_devnet(port=0, state_file=state_file) as net:
            with caplog.at_level(logging.WARNING, logger="broker.broker"):
                b = create_broker(network="devnet")      # no key configured: the dev account
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
    assert fee_a == 0 and fee_b == 0                     # the old chain's 5 0G did not follow
    assert dir_a != dir_b and gw_a != gw_b
    assert (dir_a / "fees.sqlite").exists()              # the old chain's record is kept apart


def test_explicit_key_wins_over_the_devnet_fallback(home, devnet, fresh_account, caplog):
    from broker import create_broker
    from broker.devnet.state import write_state

    write_state(devnet, home / "devnet" / "state.json")
    with caplog.at_level(logging.WARNING, logger="broker.broker"):
        b = create_broker("0x" + bytes(fresh_account.key).hex(), network="devnet")
    assert b.address == fresh_account.address and "dev account" not in caplog.text
    b.inference.close()
