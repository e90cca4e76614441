"""A new user's first hour through the real CLI (typer's CliRunner on the real app, and the
``0g-broker`` console script): mistakes move no money, every error is one line with an honest exit
code (1 error, 2 usage), messages speak the CLI, serve checks everything before it spends."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from devnet_helpers import register_chatbot_service
from eth_account import Account
from web3 import Web3

OG = 10**18
BIN = Path(sys.executable).parent / "0g-broker"


def _nonce(devnet, address: str) -> int:
    return Web3(Web3.HTTPProvider(devnet.rpc_url)).eth.get_transaction_count(address, "pending")


def _one_line(r) -> str:
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    return lines[0]


def _free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def _typo(address: str) -> str:
    low = address.lower()
    return low[:-1] + ("0" if low[-1] != "0" else "1")


@pytest.fixture(scope="module")
def registered(devnet):
    """A registered chatbot provider whose owner-acknowledged service points nowhere."""
    return register_chatbot_service(
        devnet, "http://127.0.0.1:9", model="m", input_price=1, output_price=1, owner_ack=True
    ).address


@pytest.fixture()
def user(cli, key_env, fresh_account):
    r = cli("--network", "devnet", "add-account", "--amount", "10", env=key_env)
    assert r.exit_code == 0, r.stderr
    return fresh_account.address


def test_transfer_fund_to_a_typo_is_refused_and_force_overrides(
    cli, key_env, devnet, user, registered
):
    typo = _typo(registered)
    nonce = _nonce(devnet, user)
    r = cli(
        "--network", "devnet", "transfer-fund", "--provider", typo, "--amount", "1", env=key_env
    )
    assert r.exit_code == 1
    line = _one_line(r)
    assert Web3.to_checksum_address(typo) in line and "no service is registered" in line
    assert "--force" in line
    assert _nonce(devnet, user) == nonce  # nothing sent, nothing locked
    r = cli(
        "--network",
        "devnet",
        "transfer-fund",
        "--provider",
        typo,
        "--amount",
        "1",
        "--force",
        env=key_env,
    )
    assert r.exit_code == 0, r.stderr
    assert _nonce(devnet, user) == nonce + 1


def test_acknowledge_provider_on_unregistered_address_is_refused(cli, key_env, devnet, user):
    other = Account.create().address
    nonce = _nonce(devnet, user)
    r = cli("--network", "devnet", "acknowledge-provider", "--provider", other, env=key_env)
    assert r.exit_code == 1 and "already acknowledged" not in r.stderr
    assert "no service is registered" in _one_line(r)
    # even when a (forced) sub-account exists there
    assert (
        cli(
            "--network",
            "devnet",
            "transfer-fund",
            "--provider",
            other,
            "--amount",
            "1",
            "--force",
            env=key_env,
        ).exit_code
        == 0
    )
    r = cli("--network", "devnet", "acknowledge-provider", "--provider", other, env=key_env)
    assert r.exit_code == 1 and "already acknowledged" not in r.stderr + r.stdout
    assert _nonce(devnet, user) == nonce + 1  # only the forced transfer


def test_serve_on_a_busy_port_spends_nothing(cli, key_env, devnet, user, registered):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        nonce = _nonce(devnet, user)
        r = cli(
            "--network",
            "devnet",
            "serve",
            "--provider",
            registered,
            "--port",
            str(port),
            env=key_env,
        )
    assert r.exit_code == 1
    line = _one_line(r)
    assert f"port {port}" in line and "already in use" in line
    assert "serving provider" not in r.stderr
    assert _nonce(devnet, user) == nonce  # no transfer, no acknowledgement


def test_serve_unregistered_provider_one_line_and_nothing_spent(cli, key_env, devnet, user):
    other = Account.create().address
    nonce = _nonce(devnet, user)
    r = cli(
        "--network", "devnet", "serve", "--provider", other, "--port", _free_port(), env=key_env
    )
    assert r.exit_code == 1
    line = _one_line(r)
    assert other in line and "nothing was spent" in line
    assert "serving provider" not in r.stderr
    assert _nonce(devnet, user) == nonce


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["serve", "--provider", "0x123"], "invalid provider"),
        (["serve", "--provider", "0x" + "1" * 40, "--port", "70000"], "65535"),
        (["serve", "--provider", "0x" + "1" * 40, "--verify", "bogus"], "bogus"),
        (["demo", "--size", "999x999"], "999x999"),
        (["demo", "--size", "big"], "WIDTHxHEIGHT"),
        (["demo", "--model", "/no/such/dir"], "/no/such/dir"),
        (["deposit", "--amount", "-1"], "negative"),
        (["get-models", "--provider", "nope"], "invalid provider"),
    ],
)
def test_bad_option_values_are_usage_errors(cli, args, text):
    r = cli("--network", "devnet", *args)
    assert r.exit_code == 2, (r.stdout, r.stderr)
    flat = " ".join(r.stderr.replace("│", " ").split())  # click's usage box, unwrapped
    assert text in flat and "Traceback" not in r.stderr
    assert "serving provider" not in r.stderr


def test_deposit_beyond_the_wallet_is_one_line_in_0g(cli, key_env, devnet, user):
    nonce = _nonce(devnet, user)
    r = cli("--network", "devnet", "deposit", "--amount", "1e30", env=key_env)
    assert r.exit_code == 1
    line = _one_line(r)
    assert "the wallet" in line and "0G" in line and "plus gas" in line
    assert "estimateGas" not in line and "Insufficient funds" not in line
    assert _nonce(devnet, user) == nonce


def test_messages_name_cli_commands(cli, key_env):
    r = cli("--network", "devnet", "add-account", "--amount", "1", env=key_env)
    assert r.exit_code == 1
    line = _one_line(r)
    assert "0g-broker add-account --amount 3" in line and "broker.ledger" not in line
    r = cli("--network", "devnet", "refund", "--amount", "1", env=key_env)
    assert "0g-broker add-account --amount 3" in _one_line(r)


def test_unexpected_errors_are_one_line_too(cli, key_env, tmp_path):
    # a failure no command anticipates (not a BrokerError): a malformed config file
    bad = tmp_path / "config.json"
    bad.write_text("{bad")
    r = cli("--network", "devnet", "get-account", env={**key_env, "ZG_CONFIG_FILE": str(bad)})
    assert r.exit_code == 1
    assert "JSONDecodeError" in _one_line(r)
    r = cli(
        "--network",
        "devnet",
        "get-account",
        env={**key_env, "ZG_CONFIG_FILE": str(bad), "ZG_DEBUG": "1"},
    )
    assert r.exit_code == 1 and "Traceback" in r.stderr  # ZG_DEBUG=1 shows it


def test_login_without_a_terminal_is_one_line(cli_home):
    env = {**os.environ, "ZG_HOME": str(cli_home)}
    env.pop("ZG_KEYSTORE_PASSWORD", None)
    r = subprocess.run(
        [str(BIN), "login"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=120,
    )
    assert r.returncode == 1, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "ZG_KEYSTORE_PASSWORD" in lines[0]
    assert "GetPassWarning" not in r.stderr and "Traceback" not in r.stderr
    key = "0x" + "11" * 32
    r = subprocess.run(
        [str(BIN), "login", "--stdin"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        input=key + "\n",
        timeout=120,
    )
    assert r.returncode == 1 and "ZG_KEYSTORE_PASSWORD" in r.stderr
    assert key[2:] not in r.stderr + r.stdout


def test_console_script_serve_unregistered_exit_1(cli_home, devnet):
    """The issue's 32-line traceback with exit 3, through the real entry point."""
    env = {**os.environ, "ZG_HOME": str(cli_home)}
    other = Account.create().address
    r = subprocess.run(
        [str(BIN), "--network", "devnet", "serve", "--provider", other, "--port", _free_port()],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 1, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    # the dev-account notice, then the error
    assert len(lines) == 2 and "dev account" in lines[0] and other in lines[1], r.stderr
    assert "Traceback" not in r.stderr and "serving provider" not in r.stderr


def test_serve_without_a_ledger_is_one_line_and_spends_nothing(
    cli, key_env, devnet, fresh_account, registered
):
    """A start-up step that fails after the pre-flight (no ledger to fund from) is still one
    line."""
    nonce = _nonce(devnet, fresh_account.address)
    r = cli(
        "--network",
        "devnet",
        "serve",
        "--provider",
        registered,
        "--port",
        _free_port(),
        env=key_env,
    )
    assert r.exit_code == 1
    assert "Traceback" not in r.stderr + r.stdout
    assert "add-account" in r.stderr
    assert _nonce(devnet, fresh_account.address) == nonce


def test_a_server_on_a_busy_port_exits_1_not_uvicorns_code(cli_home):
    """``worker serve`` (uvicorn) on a taken port: exit 1, not uvicorn's own status, no
    traceback."""
    env = {**os.environ, "ZG_HOME": str(cli_home)}
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        r = subprocess.run(
            [str(BIN), "worker", "serve", "--model", "tiny", "--port", port],
            check=False,
            capture_output=True,
            text=True,
            env=env,
            timeout=180,
        )
    assert r.returncode == 1, (r.returncode, r.stderr[-2000:])
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1] == (
        "✗ the server did not start (its exit status 3; see the messages above)"
    )


def test_serve_start_up_step_failing_in_the_server_is_one_line(
    key_env, user, registered, cli_home, tmp_path
):
    """A start-up step that fails inside the server's lifespan (here serve's own state database
    cannot be created: its folder is a file) ends as one line and exit 1 through the real entry
    point: uvicorn's lifespan traceback is not shown."""
    (tmp_path / "a-file").write_text("not a folder")
    state_url = f"sqlite:///{tmp_path / 'a-file' / 'serve.db'}"
    env = {**os.environ, "ZG_HOME": str(cli_home), "ZG_SERVE_STATE_URL": state_url, **key_env}
    r = subprocess.run(
        [
            str(BIN),
            "--network",
            "devnet",
            "serve",
            "--provider",
            registered,
            "--port",
            _free_port(),
        ],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 1, (r.returncode, r.stderr[-3000:])
    assert "Traceback" not in r.stderr and "Exception in" not in r.stderr, r.stderr[-3000:]
    assert r.stderr.strip().splitlines()[-1].startswith("✗ "), r.stderr[-2000:]
