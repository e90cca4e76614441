"""Start and inspect the embedded devnet (anvil + our contracts).

``start_devnet`` starts one (in-process as a context manager, the test suite's ``devnet`` fixture,
or detached); ``devnet_live`` checks a recorded one. ``0g-broker devnet up|down|status``, which
also run the devnet's provider stack, are composition code: :mod:`broker.stacks.local_devnet`.
"""

from __future__ import annotations

import secrets
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.exceptions import Web3Exception

from broker.config.chain_state import INSTANCE_MARKER
from broker.devnet.anvil import (
    DEFAULT_ACCOUNTS,
    DEVNET_CHAIN_ID,
    AnvilProcess,
    pid_alive,
    rpc_ready,
    start_anvil,
)
from broker.devnet.deploy import deploy_contracts, fee_fields, verify_deployment
from broker.devnet.errors import DevnetError, DevnetNotRunningError, PortInUseError
from broker.devnet.state import (
    DevAccount,
    DevnetState,
    default_state_file,
    read_state,
    remove_state,
    write_state,
)

__all__ = [
    "DEFAULT_PORT",
    "Devnet",
    "devnet_live",
    "fund_new_account",
    "load_devnet_state",
    "start_devnet",
]

DEFAULT_PORT = 8545
_NOT_RUNNING = "devnet is not running; run `0g-broker devnet up`"
_fund_lock = threading.Lock()


class Devnet:
    """A devnet started by this process: ``state`` (:class:`DevnetState`), ``state_file``,
    ``anvil``.

    Use as a context manager (``with start_devnet(port=0) as net: ...``) or call :meth:`stop`.
    """

    def __init__(self, state: DevnetState, state_file: Path, anvil: AnvilProcess) -> None:
        self.state = state
        self.state_file = state_file
        self.anvil = anvil

    def __repr__(self) -> str:
        return f"Devnet(rpc_url={self.state.rpc_url!r}, pid={self.state.anvil_pid})"

    def stop(self) -> None:
        """Stop anvil (no process left) and remove the state file if it still describes this
        devnet."""
        self.anvil.stop()
        try:
            if read_state(self.state_file).anvil_pid == self.state.anvil_pid:
                remove_state(self.state_file)
        except DevnetError:
            pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_devnet(
    *,
    port: int = DEFAULT_PORT,
    state_file: Path | None = None,
    accounts: int = DEFAULT_ACCOUNTS,
    detach: bool = False,
) -> Devnet:
    """Start anvil on ``127.0.0.1:port``, deploy our contracts (contracts.md A4) and write the
    state.

    Args:
        port: TCP port; 0 picks a free one.
        state_file: where to record the state; default ``$ZG_HOME/devnet/state.json``. anvil's log
            goes next to it (``anvil.log``).
        accounts: number of funded dev accounts (1 000 000 0G each); account 0 deploys and owns.
        detach: run anvil in its own session so it outlives this process (``devnet up``).

    Returns:
        A running :class:`Devnet`.

    Raises:
        PortInUseError: ``port`` is taken. DevnetError: anvil missing or failing, deployment failed.
    """
    state_file = Path(state_file or default_state_file())
    log_file = state_file.parent / "anvil.log"
    for attempt in range(3):
        try:
            anvil = start_anvil(port=port, accounts=accounts, detach=detach, log_file=log_file)
            break
        except PortInUseError:
            if port != 0 or attempt == 2:  # a free port chosen by us can be taken in between: retry
                raise
    try:
        w3 = Web3(Web3.HTTPProvider(anvil.rpc_url, request_kwargs={"timeout": 30}))
        deployed = deploy_contracts(w3, anvil.private_keys[0])
        # a random id of this devnet instance, so state keyed by chain never mixes two devnets
        # (see broker.config.chain_state.local_chain_identity)
        w3.provider.make_request(
            "anvil_setStorageAt", [INSTANCE_MARKER, "0x0", "0x" + secrets.token_hex(32)]
        )
        state = DevnetState(
            rpc_url=anvil.rpc_url,
            chain_id=DEVNET_CHAIN_ID,
            ledger_address=deployed.ledger,
            inference_address=deployed.inference,
            owner=deployed.owner,
            accounts=[
                DevAccount(address=a, private_key=k)
                for a, k in zip(anvil.accounts, anvil.private_keys, strict=True)
            ],
            anvil_pid=anvil.pid,
            port=anvil.port,
            started_at=datetime.now(UTC),
            log_file=log_file,
            detached=detach,
        )
        write_state(state, state_file)
    except BaseException:
        anvil.stop()
        raise
    return Devnet(state, state_file, anvil)


def devnet_live(state: DevnetState) -> bool:
    """Whether the devnet ``state`` describes runs: its anvil is alive, answers with the recorded
    chain id, and has our contracts at the recorded addresses.

    Args:
        state: a recorded :class:`DevnetState`.

    Returns:
        True when the devnet can be reused as it is.
    """
    if not pid_alive(state.anvil_pid) or rpc_ready(state.rpc_url) != state.chain_id:
        return False
    w3 = Web3(Web3.HTTPProvider(state.rpc_url, request_kwargs={"timeout": 5}))
    return verify_deployment(w3, state.ledger_address, state.inference_address)


def load_devnet_state(state_file: Path | None = None) -> DevnetState:
    """The state of the running devnet (for ``--network devnet``).

    Raises:
        DevnetNotRunningError: no state file, or its anvil is dead / not answering
            ("devnet is not running; run `0g-broker devnet up`").
    """
    state = read_state(state_file)
    if not pid_alive(state.anvil_pid) or rpc_ready(state.rpc_url) != state.chain_id:
        raise DevnetNotRunningError(_NOT_RUNNING)
    return state


def fund_new_account(state: DevnetState, amount_neuron: int) -> LocalAccount:
    """Create a random account and fund it with ``amount_neuron`` neuron from the last dev account.

    Thread-safe within a process (one funding transaction at a time). Waits for the receipt.

    Returns:
        The new ``eth_account`` LocalAccount.

    Raises:
        ValueError: ``amount_neuron`` is negative. DevnetError: the transfer failed.
    """
    if amount_neuron < 0:
        raise ValueError("amount_neuron must be >= 0")
    account: LocalAccount = Account.create()
    funder = Account.from_key(state.accounts[-1].private_key.get_secret_value())
    w3 = Web3(Web3.HTTPProvider(state.rpc_url, request_kwargs={"timeout": 30}))
    with _fund_lock:
        try:
            tx = {
                "to": account.address,
                "value": amount_neuron,
                "gas": 21_000,
                **fee_fields(w3),
                "nonce": w3.eth.get_transaction_count(funder.address, "pending"),
                "chainId": state.chain_id,
            }
            tx_hash = w3.eth.send_raw_transaction(funder.sign_transaction(tx).raw_transaction)
            receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=0.05)
        except (Web3Exception, ValueError, OSError) as exc:
            raise DevnetError(f"funding a new devnet account failed: {exc}") from None
    if receipt["status"] != 1:
        raise DevnetError("funding a new devnet account failed (reverted)")
    return account
