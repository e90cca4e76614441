"""Devnet lifecycle: up is idempotent, down leaves no process, busy ports, state file, CLI."""

from __future__ import annotations

import json
import os
import socket
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from broker._exceptions import DevnetError
from broker.cli.devnet import app
from broker.devnet import (
    AnvilNotFoundError,
    DevnetNotRunningError,
    PortInUseError,
    load_devnet_state,
    start_devnet,
)
from broker.devnet.anvil import pid_alive
from broker.devnet.state import read_state
from broker.stacks.local_devnet import devnet_down, devnet_status, devnet_up


@pytest.mark.timeout(120)
def test_cli_up_is_idempotent_and_down_leaves_no_process(tmp_path: Path) -> None:
    state_file = tmp_path / "devnet" / "state.json"
    runner = CliRunner()
    res = runner.invoke(app, ["status", "--json", "--state-file", str(state_file)])
    assert res.exit_code == 1 and json.loads(res.stdout)["running"] is False

    res = runner.invoke(app, ["up", "--port", "0", "--json", "--state-file", str(state_file)])
    assert res.exit_code == 0, res.output
    first = json.loads(res.stdout)
    assert first["ledger_address"] == "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0"
    assert first["inference_address"] == "0x0165878A594ca255338adfa4d48449f69242Eb8F"
    assert "private_key" not in res.stdout
    pid = first["anvil_pid"]
    try:
        assert pid_alive(pid)
        assert stat.S_IMODE(state_file.stat().st_mode) == 0o600
        saved = json.loads(state_file.read_text())
        assert saved["accounts"][0]["private_key"].startswith(
            "0x"
        )  # public anvil keys are recorded
        state = load_devnet_state(state_file)
        assert "0xac0974" not in repr(state)

        again = devnet_up(port=0, state_file=state_file)  # reuses the running devnet
        assert again.anvil_pid == pid and again.rpc_url == first["rpc_url"]

        res = runner.invoke(app, ["status", "--json", "--state-file", str(state_file)])
        status = json.loads(res.stdout)
        assert status["running"] is True and status["state"]["anvil_pid"] == pid
        assert status["block_number"] >= 10  # the ten deployment transactions
        res = runner.invoke(
            app, ["status", "--json", "--show-keys", "--state-file", str(state_file)]
        )
        assert json.loads(res.stdout)["state"]["accounts"][0]["private_key"].startswith("0x")
    finally:
        res = runner.invoke(app, ["down", "--state-file", str(state_file)])
    assert res.exit_code == 0
    assert not pid_alive(pid)
    assert not state_file.exists()
    assert devnet_down(state_file) is False
    assert devnet_status(state_file)["running"] is False
    with pytest.raises(DevnetNotRunningError, match="devnet up"):
        load_devnet_state(state_file)


def test_up_replaces_a_dead_recorded_devnet(tmp_path: Path) -> None:
    state_file = tmp_path / "state.json"
    with start_devnet(port=0, state_file=state_file, accounts=2) as net:
        dead = net.state
    # the process is gone but pretend the state file survived (e.g. after a reboot)
    from broker.devnet.state import write_state

    write_state(dead, state_file)
    with pytest.raises(DevnetNotRunningError):
        load_devnet_state(state_file)
    fresh = devnet_up(port=0, state_file=state_file, accounts=2)
    try:
        assert fresh.anvil_pid != dead.anvil_pid and pid_alive(fresh.anvil_pid)
        assert len(fresh.accounts) == 2
    finally:
        assert devnet_down(state_file) is True
    assert not pid_alive(fresh.anvil_pid)


def test_port_in_use_is_a_clear_error(tmp_path: Path, devnet) -> None:
    with pytest.raises(PortInUseError, match=str(devnet.port)):
        start_devnet(port=devnet.port, state_file=tmp_path / "s.json")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        res = CliRunner().invoke(
            app, ["up", "--port", str(port), "--state-file", str(tmp_path / "s.json")]
        )
    assert res.exit_code == 1
    assert "already in use" in res.output
    assert not (tmp_path / "s.json").exists()


def test_missing_anvil_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZG_ANVIL_BIN", str(tmp_path / "no-anvil"))
    with pytest.raises(AnvilNotFoundError, match="ZG_ANVIL_BIN"):
        start_devnet(port=0, state_file=tmp_path / "s.json")
    assert issubclass(AnvilNotFoundError, DevnetError)


def test_malformed_state_file(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_text("{not json")
    with pytest.raises(DevnetError, match="malformed"):
        read_state(path)
    assert devnet_down(path) is True and not path.exists()


def test_session_devnet_state_and_funding(devnet, fresh_account) -> None:
    from web3 import Web3

    w3 = Web3(Web3.HTTPProvider(devnet.rpc_url))
    assert w3.eth.get_balance(fresh_account.address) == 1000 * 10**18
    assert (
        devnet.owner == devnet.accounts[0].address == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    )
    assert len(devnet.accounts) == 20
    assert devnet.rpc_url.startswith("http://127.0.0.1:")
    assert os.path.exists(f"/proc/{devnet.anvil_pid}") or pid_alive(devnet.anvil_pid)
