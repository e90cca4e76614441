"""Per-chain state folders: one per network, chain id and contract set; local chains also keyed by
their genesis block, so a restarted devnet (same chain id and addresses) gets a new folder."""

from __future__ import annotations

import subprocess
import sys

from broker.config.chain_state import chain_state_dir, chain_tag, genesis_hash

LEDGER = "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0"


def test_tags():
    assert chain_tag("mainnet", 16661, LEDGER) == "mainnet-16661-0x9fE46736"
    # a genesis hash only distinguishes local chains
    assert chain_tag("mainnet", 16661, LEDGER, "0xabcdef0123") == "mainnet-16661-0x9fE46736"
    a = chain_tag("devnet", 31337, LEDGER, "0xAAAAAAAA11")
    b = chain_tag("devnet", 31337, LEDGER, "0xbbbbbbbb22")
    assert a == "devnet-31337-0x9fE46736-aaaaaaaa" and a != b
    assert chain_tag("my net/../x", None, LEDGER) == "my_net_.._x-0-0x9fE46736"
    assert "/" not in chain_tag("../../etc", 1, LEDGER)


def test_dir_is_under_zg_home(_isolated_home):
    assert chain_state_dir("testnet", 16602, LEDGER) == (
        _isolated_home / "chains" / "testnet-16602-0x9fE46736"
    )


def test_genesis_hash_of_an_unreachable_node_is_refused_not_left_out():
    """Without block 0 two devnets (same chain id and addresses) would share one state folder."""
    import pytest
    from web3 import Web3

    from broker._exceptions import ChainError

    with pytest.raises(ChainError, match="genesis block"):
        genesis_hash(Web3(Web3.HTTPProvider("http://127.0.0.1:9", {"timeout": 2})), attempts=2)


def test_genesis_hash_of_the_devnet(devnet):
    from web3 import Web3

    value = genesis_hash(Web3(Web3.HTTPProvider(devnet.rpc_url)))
    assert value is not None and value.startswith("0x") and len(value) == 66


def test_errors_is_an_attribute_of_the_package():
    code = (
        "import broker, sys; assert 'broker.errors' not in sys.modules; "
        "print(broker.errors.ProviderNotRegisteredError.__mro__[1].__name__)"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0 and run.stdout.strip() == "LedgerError", run.stderr


def test_two_devnets_in_one_second_have_different_identities(tmp_path):
    """Started back to back, two devnets can share their genesis block (same second, accounts and
    contracts); the instance id ``devnet up`` writes still tells them apart."""
    from web3 import Web3

    from broker.config.chain_state import local_chain_identity
    from broker.devnet import start_devnet

    seen = []
    for _ in range(2):
        with start_devnet(port=0, state_file=tmp_path / "state.json") as net:
            seen.append(local_chain_identity(Web3(Web3.HTTPProvider(net.state.rpc_url))))
    assert seen[0] != seen[1] and all(len(x) == 66 for x in seen)
