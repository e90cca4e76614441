"""The 0g-broker CLI on the devnet: ledger commands, JSON output, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from eth_account import Account

OG = 10**18
BIN = Path(sys.executable).parent / "0g-broker"


def test_quickstart_uses_dev_account_without_login(cli, devnet):
    r = cli("--network", "devnet", "add-account", "--amount", "3")
    assert r.exit_code == 0, r.stderr
    assert f"using devnet dev account {devnet.accounts[0].address}" in r.stderr
    assert "Account Created!" in r.stderr
    r = cli("--network", "devnet", "get-account", "--json")
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["address"] == devnet.accounts[0].address
    assert (data["total"], data["total_0g"], data["locked"], data["available_0g"]) == (
        str(3 * OG),
        "3",
        "0",
        "3",
    )
    assert data["inference"] == []


def test_ledger_flow(cli, key_env, fresh_account):
    provider = Account.create().address
    steps = [
        ("add-account", "--amount", "5"),
        ("deposit", "--amount", "1.5"),
        ("transfer-fund", "--provider", provider, "--amount", "2", "--force"),  # unregistered
    ]
    for step in steps:
        r = cli("--network", "devnet", *step, env=key_env)
        assert r.exit_code == 0, (step, r.stderr)
        assert r.stdout.strip().startswith("0x")  # the tx hash is the data
    r = cli("--network", "devnet", "--json", "get-account", env=key_env)
    data = json.loads(r.stdout)
    assert data["address"] == fresh_account.address
    assert (data["total_0g"], data["locked_0g"], data["available_0g"]) == ("6.5", "2", "4.5")
    assert data["inference"] == [
        {
            "provider": provider,
            "balance": str(2 * OG),
            "balance_0g": "2",
            "pending_refund": "0",
            "pending_refund_0g": "0",
        }
    ]
    r = cli("--network", "devnet", "--json", "retrieve-fund", "--provider", provider, env=key_env)
    assert r.exit_code == 0, r.stderr
    assert len(json.loads(r.stdout)["transactions"]) == 1
    r = cli("--network", "devnet", "get-sub-account", "--provider", provider, "--json", env=key_env)
    sub = json.loads(r.stdout)
    assert sub["balance_0g"] == "2" and sub["pending_refund"] == str(2 * OG)
    assert len(sub["refunds"]) == 1
    assert 0 <= sub["refunds"][0]["remaining_lock"] <= sub["lock_time"]
    r = cli("--network", "devnet", "get-sub-account", "--provider", provider, env=key_env)
    assert r.exit_code == 0 and "Remaining Locked Time" in r.stdout and "h " in r.stdout
    r = cli("--network", "devnet", "refund", "--amount", "1.5", env=key_env)
    assert r.exit_code == 0, r.stderr
    r = cli("--network", "devnet", "get-account", env=key_env)
    assert "3.000000000000000000" in r.stdout  # available after the refund, 18 decimals


def test_errors_are_one_red_line_with_exit_1(cli, key_env):
    r = cli("--network", "devnet", "add-account", "--amount", "2", env=key_env)
    assert r.exit_code == 1
    assert r.stderr.count("\n") == 1 and "Minimum balance to create a ledger is 3 0G" in r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""
    r = cli("--network", "devnet", "deposit", "--amount", "0.1x", env=key_env)
    assert r.exit_code == 2 and "not a number" in r.stderr  # a bad option value: usage error
    r = cli(
        "--network", "devnet", "transfer-fund", "--provider", "0x12", "--amount", "1", env=key_env
    )
    assert r.exit_code == 2 and "invalid provider" in r.stderr
    r = cli("--network", "devnet", "get-account", env={**key_env, "ZG_DEBUG": "1"})
    assert r.exit_code == 1 and "Traceback" in r.stderr and "Account does not exist" in r.stderr
    r = cli("--network", "moon", "get-account", env=key_env)
    assert r.exit_code == 1 and "unknown network" in r.stderr


def test_console_script_exit_codes(cli_home, key_env):
    env = {**os.environ, **key_env}
    r = subprocess.run(
        [str(BIN), "--network", "devnet", "refund", "--amount", "1"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip().count("\n") == 0 and "Account does not exist" in r.stderr
    assert "Traceback" not in r.stderr
    r = subprocess.run(
        [str(BIN), "deposit"], check=False, capture_output=True, text=True, env=env, timeout=120
    )
    assert r.returncode == 2 and "--amount" in r.stderr
