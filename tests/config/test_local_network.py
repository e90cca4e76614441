"""One network resolver (broker.config.local_network) for the user side and the gateway; the devnet
plugs in through its state file, and the library never imports the devnet package."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from broker._exceptions import ConfigError
from broker.broker import resolve_network
from broker.config.local_network import read_local_network, resolve_endpoints
from broker.devnet.state import write_state
from broker.provider.errors import ProviderConfigError
from broker.provider.serve import resolve_chain
from broker.provider.settings import ProviderSettings

SRC = Path(__file__).resolve().parents[2]


def test_user_side_and_gateway_resolve_the_devnet_alike(devnet, tmp_path, monkeypatch):
    monkeypatch.setenv("ZG_HOME", str(tmp_path))
    write_state(devnet, tmp_path / "devnet" / "state.json")
    net = resolve_network("devnet")
    rpc, address = resolve_chain(ProviderSettings(network="devnet"))
    assert (
        (net.rpc_url, net.inference_address)
        == (rpc, address)
        == (devnet.rpc_url, devnet.inference_address)
    )
    assert net.chain_id == devnet.chain_id
    assert net.dev_accounts[0].address == devnet.accounts[0].address
    assert read_local_network().ledger_address == devnet.ledger_address


def test_no_devnet_is_a_config_error_on_both_sides(tmp_path, monkeypatch):
    monkeypatch.setenv("ZG_HOME", str(tmp_path))
    with pytest.raises(ConfigError, match="devnet up"):
        resolve_endpoints("devnet")
    with pytest.raises(ProviderConfigError, match="ZG_PROVIDER_RPC_URL"):
        resolve_chain(ProviderSettings(network="devnet"))
    (tmp_path / "devnet").mkdir()
    (tmp_path / "devnet" / "state.json").write_text('{"rpc_url": 5}')
    with pytest.raises(ConfigError, match="malformed"):
        resolve_endpoints("devnet")


def test_explicit_values_skip_the_state_file_and_the_chain_id_check(tmp_path, monkeypatch):
    monkeypatch.setenv("ZG_HOME", str(tmp_path))
    ends = resolve_endpoints(
        "devnet",
        rpc_url="http://127.0.0.1:1",
        inference_address="0x" + "1" * 40,
        require_ledger=False,
    )
    assert ends.rpc_url == "http://127.0.0.1:1" and ends.chain_id is None
    assert ends.ledger_address is None


def test_the_library_does_not_import_the_devnet():
    code = (
        "import sys, broker.broker, broker.provider.serve, broker.proxy.app; "
        "print(sorted(m for m in sys.modules if m.startswith('broker.devnet')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(SRC)},
        timeout=120,
    )
    assert out.stdout.strip() == "[]"
