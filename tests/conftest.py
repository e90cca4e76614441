"""Shared fixtures: an isolated ZG_HOME per test session, the reference folder, one real devnet
(anvil + our contracts) per test session with fresh funded accounts per test, and brokers on it.

``tests/helpers`` goes on sys.path: its modules (``devnet_helpers``) are imported by name.

A guard (``thread_guard.FundingThreadGuard`` and the ``_funding_guard_*`` fixtures) fails the
teardown of a test, module or session when an auto-funding scheduler started in that scope still
has a thread alive: close the broker (``InferenceBroker.close``) or stop serve before it ends."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

import broker  # noqa: F401  first: its import hook keeps py_ecc from raising the recursion limit

sys.path.insert(0, str(Path(__file__).resolve().parent / "helpers"))

from thread_guard import FundingGuardPlugin, FundingThreadGuard  # found through the path above

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED = REPO_ROOT.parent / "shared"

_FUNDING_GUARD = FundingThreadGuard()


def pytest_configure(config: pytest.Config) -> None:
    # registered as a plugin, not written as this conftest's hooks: pytest calls a conftest's
    # pytest_fixture_setup only for fixtures below its folder, which leaves out session fixtures
    config.pluginmanager.register(FundingGuardPlugin(_FUNDING_GUARD), "funding-thread-guard")


def _fail_on_funding_leak(scope: str) -> None:
    leaked = _FUNDING_GUARD.leaks(scope)
    if leaked:
        pytest.fail(
            f"auto-funding outlived its {scope} scope: threads {leaked} are still alive; close the "
            "InferenceBroker (or stop serve) that started it",
            pytrace=False,
        )


# Autouse guards: each is set up before the other fixtures of its scope, so its check runs after
# theirs were torn down (a broker closed by a fixture counts) and before any wider scope ends.
@pytest.fixture(scope="session", autouse=True)
def _funding_guard_session():
    """At the end of the session no auto-funding thread is left."""
    yield
    _fail_on_funding_leak("session")


@pytest.fixture(scope="module", autouse=True)
def _funding_guard_module():
    """At the end of a module no auto-funding started in it (or in a class) is left."""
    yield
    _fail_on_funding_leak("module")


@pytest.fixture(autouse=True)
def _funding_guard_test():
    """At the end of a test no auto-funding started by it (or a function fixture) is left."""
    yield
    _fail_on_funding_leak("function")


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


@pytest.fixture()
def make_broker(devnet):
    """``make_broker(account, **overrides)`` → a :class:`broker.broker.Broker` on the devnet."""
    from devnet_helpers import key_hex

    from broker.broker import create_broker

    def make(account, **kwargs):
        params = {
            "network": "devnet",
            "rpc_url": devnet.rpc_url,
            "ledger_address": devnet.ledger_address,
            "inference_address": devnet.inference_address,
            **kwargs,
        }
        return create_broker(key_hex(account), **params)

    return make


@pytest.fixture()
def funded_broker(make_broker, fresh_account):
    """A broker for a fresh account holding 1000 0G (no ledger yet)."""
    return make_broker(fresh_account)


@pytest.fixture(scope="session")
def postgres_server():
    """One throw-away PostgreSQL server on 127.0.0.1 for the session (skips when unavailable);
    see ``tests/helpers/postgres_helpers.py``."""
    from postgres_helpers import start_postgres

    server = start_postgres()
    yield server
    server.stop()


@pytest.fixture()
def postgres_url(postgres_server) -> str:
    """A fresh, empty database on the session's PostgreSQL; its SQLAlchemy URL."""
    return postgres_server.create_database("t")
