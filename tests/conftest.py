"""Shared fixtures: an isolated ZG_HOME per test session, the reference folder, and one real devnet
(anvil + our contracts) per test session with fresh funded accounts per test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"


@pytest.fixture(scope="session", autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Point ZG_HOME at a temporary directory so no test touches the user's ~/.0g-broker."""
    home = tmp_path_factory.mktemp("zg-home")
    old = {k: os.environ.get(k) for k in ("ZG_HOME", "ZG_PRIVATE_KEY", "ZG_NETWORK")}
    os.environ["ZG_HOME"] = str(home)
    os.environ.pop("ZG_PRIVATE_KEY", None)
    os.environ.pop("ZG_NETWORK", None)
    yield home
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def reference_dir() -> Path:
    """``../shared/reference``; tests that need it skip when it is absent."""
    path = SHARED / "reference"
    if not path.is_dir():
        pytest.skip("../shared/reference is not present")
    return path


@pytest.fixture(scope="session")
def attestation_samples_dir() -> Path:
    """``../shared/attestation-samples``; skip when absent."""
    path = SHARED / "attestation-samples"
    if not path.is_dir():
        pytest.skip("../shared/attestation-samples is not present")
    return path


@pytest.fixture(scope="session")
def devnet(tmp_path_factory: pytest.TempPathFactory):
    """One anvil with our contracts deployed, on a random free loopback port, for the session.

    Yields a :class:`broker.devnet.DevnetState` (rpc_url, chain_id, ledger_address,
    inference_address, owner, accounts).
    """
    from broker.devnet import start_devnet

    state_file = tmp_path_factory.mktemp("devnet") / "state.json"
    with start_devnet(port=0, state_file=state_file) as net:
        yield net.state


@pytest.fixture()
def fresh_account(devnet):
    """A new random account funded with 1000 0G from the devnet's funder, unique to the test.

    Returns an ``eth_account`` LocalAccount.
    """
    from broker.devnet import fund_new_account

    return fund_new_account(devnet, amount_neuron=1000 * 10**18)
