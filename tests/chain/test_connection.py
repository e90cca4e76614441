"""broker.chain.connection and create_broker wiring on the devnet."""

from __future__ import annotations

import pytest

from broker._exceptions import ConfigError, RPCError
from broker.chain.connection import connect, redact_url
from broker.chain.errors import ChainIdMismatchError, SignerRequiredError
from broker.ports import free_port


def test_connect_checks_chain_id(devnet):
    w3 = connect(devnet.rpc_url, expected_chain_id=31337)
    assert w3.eth.chain_id == 31337
    with pytest.raises(ChainIdMismatchError, match="serves chain 31337, expected 16661"):
        connect(devnet.rpc_url, expected_chain_id=16661)


def test_connect_errors():
    with pytest.raises(RPCError, match="cannot reach"):
        connect(f"http://127.0.0.1:{free_port()}/secret-key", timeout=2)
    with pytest.raises(ConfigError):
        connect("ftp://example.org")
    assert redact_url("https://user:pw@node.example:8545/v1/KEY?x=1") == "https://node.example:8545"


def test_create_broker_wires_everything(make_broker, fresh_account, devnet):
    b = make_broker(fresh_account)
    assert b.address == fresh_account.address
    assert b.service_name == "inference-v1.0"
    assert b.ledger.service_name("inference") == "inference-v1.0"
    assert b.ledger_contract.address == devnet.ledger_address
    assert b.inference_contract.address == devnet.inference_address
    assert b.sender.address == b.address
    assert b.w3.eth.chain_id == 31337
    assert bytes(fresh_account.key).hex() not in repr(b) + repr(b.wallet) + repr(b.sender)


def test_devnet_network_reads_the_state_file(devnet, fresh_account, tmp_path, monkeypatch):
    from broker.broker import create_broker
    from broker.devnet.state import write_state

    monkeypatch.setenv("ZG_HOME", str(tmp_path))
    write_state(devnet, tmp_path / "devnet" / "state.json")
    b = create_broker("0x" + bytes(fresh_account.key).hex(), network="devnet")
    assert b.network.rpc_url == devnet.rpc_url and b.network.chain_id == 31337
    assert b.network.dev_accounts[0].address == devnet.accounts[0].address


def test_devnet_state_missing_is_a_config_error(tmp_path, monkeypatch):
    from broker.broker import resolve_network

    monkeypatch.setenv("ZG_HOME", str(tmp_path))
    with pytest.raises(ConfigError, match="devnet up"):
        resolve_network("devnet")


def test_unregistered_inference_contract(make_broker, fresh_account, devnet):
    from broker.ledger.errors import UnregisteredServiceError

    with pytest.raises(UnregisteredServiceError, match="not registered"):
        make_broker(fresh_account, inference_address=devnet.owner)


def test_read_only_broker_and_inference_hook(devnet, make_broker, fresh_account):
    from broker import broker as broker_module

    ro = broker_module.create_read_only_broker(
        "devnet",
        rpc_url=devnet.rpc_url,
        ledger_address=devnet.ledger_address,
        inference_address=devnet.inference_address,
    )
    assert ro.service_name == "inference-v1.0"
    assert ro.inference_contract.lock_time() > 0
    with pytest.raises(SignerRequiredError):
        ro.ledger_contract.deposit_fund(10**18)

    from broker.inference.broker import InferenceBroker

    b = make_broker(fresh_account)
    assert isinstance(b.inference, InferenceBroker)  # built directly, no registration step
    assert b.inference.address == fresh_account.address
    assert b.inference.contract.address == devnet.inference_address
    b.inference.close()


def test_no_key_configured(devnet, monkeypatch, tmp_path):
    from broker._exceptions import KeyStoreError
    from broker.broker import create_broker

    monkeypatch.setenv("ZG_HOME", str(tmp_path))
    with pytest.raises(KeyStoreError, match="no private key configured"):
        create_broker(
            network="devnet",
            rpc_url=devnet.rpc_url,
            ledger_address=devnet.ledger_address,
            inference_address=devnet.inference_address,
        )
