"""``0g-broker devnet up | down | status``: a detached devnet that lives between CLI invocations,
recorded in its state file, with an optional provider stack (worker + gateway processes,
:func:`broker.stacks.provider_stack.start_provider_stack` with ``detach=True``).

The devnet itself (anvil, the contracts, the state file) is :mod:`broker.devnet`; this module only
composes it with the provider's servers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from web3 import Web3
from web3.exceptions import Web3Exception

from broker.devnet.anvil import DEFAULT_ACCOUNTS, stop_pid
from broker.devnet.errors import DevnetError, DevnetNotRunningError
from broker.devnet.manager import DEFAULT_PORT, devnet_live, start_devnet
from broker.devnet.state import (
    DevnetState,
    ProviderStackState,
    default_state_file,
    read_state,
    remove_state,
    write_state,
)
from broker.stacks.provider_stack import (
    check_worker_installed,
    check_worker_model,
    start_provider_stack,
)
from broker.stacks.servers import process_alive, stop_process

__all__ = ["devnet_down", "devnet_status", "devnet_up"]


def _provider_live(provider: ProviderStackState) -> bool:
    if not provider.pids() or not all(process_alive(p) for p in provider.pids()):
        return False
    try:
        return httpx.get(provider.gateway_url + "/health", timeout=3.0).status_code == 200
    except httpx.HTTPError:
        return False


def _stop_provider(provider: ProviderStackState | None) -> None:
    if provider is not None:
        for pid in (provider.gateway_pid, provider.worker_pid):
            if pid:
                stop_process(pid)


def devnet_up(
    *,
    port: int = DEFAULT_PORT,
    state_file: Path | None = None,
    accounts: int = DEFAULT_ACCOUNTS,
    with_provider: bool = False,
    model: str = "tiny",
) -> DevnetState:
    """Ensure a detached devnet runs and return its state (idempotent).

    When the state file names a live anvil whose chain has our contracts at the recorded addresses,
    that state is reused. Otherwise a stale recorded process is stopped and a new detached devnet is
    started on ``port`` (contracts deployed, state written).

    With ``with_provider``, a complete provider (Z-Image worker ``model`` + gateway, registered and
    acknowledged on chain; :func:`~broker.stacks.provider_stack.start_provider_stack` with
    ``detach=True``) is started unless a live one is recorded; its addresses, URLs, pids and log
    files are recorded in the state (``state.provider``). Its files live in
    ``<state folder>/provider``.

    Raises:
        InputError: ``model`` names a missing folder; DevnetError: the ``[worker]`` extra is
            missing (both checked before anything starts).
        PortInUseError, DevnetError: as :func:`start_devnet`; DevnetError: the provider did not
            start (the devnet is left running, no provider process is left).
    """
    state_file = Path(state_file or default_state_file())
    if with_provider:  # pre-flight before anything starts
        check_worker_model(model)
        check_worker_installed()
    try:
        current = read_state(state_file)
    except DevnetError:
        current = None
    state: DevnetState | None = None
    if current is not None:
        if devnet_live(current):
            state = current
        else:
            _stop_provider(current.provider)
            stop_pid(current.anvil_pid)
            remove_state(state_file)
    if state is None:
        state = start_devnet(port=port, state_file=state_file, accounts=accounts, detach=True).state
    if not with_provider or (state.provider is not None and _provider_live(state.provider)):
        return state
    _stop_provider(state.provider)
    stack = start_provider_stack(
        state.model_copy(update={"provider": None}),
        model=model,
        home=state_file.parent / "provider",
        detach=True,
    )
    state = state.model_copy(update={"provider": stack.info})
    try:
        write_state(state, state_file)
    except BaseException:
        stack.stop()
        raise
    return state


def devnet_down(state_file: Path | None = None) -> bool:
    """Stop the recorded devnet (and its provider stack, if any) and delete the state file.

    Returns True when a state file existed (a recorded devnet was taken down), False when there was
    nothing to do. Afterwards no recorded anvil, worker or gateway process is left.

    Raises:
        DevnetError: the process could not be stopped.
    """
    state_file = Path(state_file or default_state_file())
    try:
        state = read_state(state_file)
    except DevnetNotRunningError:
        return False
    except DevnetError:
        remove_state(state_file)  # malformed: nothing we can stop
        return True
    _stop_provider(state.provider)
    stop_pid(state.anvil_pid)
    remove_state(state_file)
    return True


def devnet_status(state_file: Path | None = None) -> dict[str, Any]:
    """Describe the devnet.

    Returns:
        ``{"running": bool, "state_file": str, "state": dict | None, "block_number": int | None,
        "provider": dict | None}``; ``state`` is :meth:`DevnetState.public_dict` (no private keys);
        ``provider`` is the recorded provider stack plus ``"running": bool`` (processes alive and
        the gateway's ``/health`` answering).
    """
    state_file = Path(state_file or default_state_file())
    result: dict[str, Any] = {
        "running": False,
        "state_file": str(state_file),
        "state": None,
        "block_number": None,
        "provider": None,
    }
    try:
        state = read_state(state_file)
    except DevnetError:
        return result
    result["state"] = state.public_dict()
    if state.provider is not None:
        result["provider"] = {
            **state.provider.model_dump(mode="json"),
            "running": _provider_live(state.provider),
        }
    if devnet_live(state):
        result["running"] = True
        try:
            result["block_number"] = Web3(Web3.HTTPProvider(state.rpc_url)).eth.block_number
        except (Web3Exception, OSError):
            pass
    return result
