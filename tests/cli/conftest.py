"""CLI fixtures: an isolated ZG_HOME holding the session devnet's state file."""

from __future__ import annotations

import pytest


@pytest.fixture()
def cli_home(devnet, tmp_path, monkeypatch):
    """A fresh ZG_HOME with ``devnet/state.json`` pointing at the session devnet; no key set."""
    from broker.devnet.state import write_state

    home = tmp_path / "home"
    write_state(devnet, home / "devnet" / "state.json")
    monkeypatch.setenv("ZG_HOME", str(home))
    for var in (
        "ZG_PRIVATE_KEY",
        "ZG_KEYSTORE_PASSWORD",
        "ZG_NETWORK",
        "ZG_RPC_URL",
        "ZG_DEBUG",
        "ZG_CONFIG_FILE",
        "ZG_KEYSTORE",
    ):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture()
def cli(cli_home):
    """``cli(*args, env=None, input=None)`` → click Result (stdout and stderr separate)."""
    from typer.testing import CliRunner

    from broker.cli.main import app

    runner = CliRunner()

    def run(*args: str, env: dict[str, str] | None = None, input: str | None = None):
        return runner.invoke(app, list(args), env=env, input=input, catch_exceptions=False)

    return run


@pytest.fixture()
def key_env(fresh_account):
    """``{"ZG_PRIVATE_KEY": <fresh funded key>}``."""
    return {"ZG_PRIVATE_KEY": "0x" + bytes(fresh_account.key).hex()}
