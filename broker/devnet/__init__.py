"""The embedded devnet: anvil on 127.0.0.1 with our LedgerManager and InferenceServing deployed at
the TS SDK's hardhat addresses (contracts.md A4)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from broker._lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover - names for type checkers; loaded on first use
    from broker.devnet.errors import (
        AnvilNotFoundError,
        DevnetError,
        DevnetNotRunningError,
        PortInUseError,
    )
    from broker.devnet.manager import (
        Devnet,
        devnet_down,
        devnet_status,
        devnet_up,
        fund_new_account,
        load_devnet_state,
        start_devnet,
    )
    from broker.devnet.stack import ProviderStack, start_provider_stack
    from broker.devnet.state import DevAccount, DevnetState, ProviderStackState, default_state_file

__all__ = [
    "AnvilNotFoundError",
    "DevAccount",
    "Devnet",
    "DevnetError",
    "DevnetNotRunningError",
    "DevnetState",
    "PortInUseError",
    "ProviderStack",
    "ProviderStackState",
    "default_state_file",
    "devnet_down",
    "devnet_status",
    "devnet_up",
    "fund_new_account",
    "load_devnet_state",
    "start_devnet",
    "start_provider_stack",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "AnvilNotFoundError": "errors",
        "DevnetError": "errors",
        "DevnetNotRunningError": "errors",
        "PortInUseError": "errors",
        "Devnet": "manager",
        "devnet_down": "manager",
        "devnet_status": "manager",
        "devnet_up": "manager",
        "fund_new_account": "manager",
        "load_devnet_state": "manager",
        "start_devnet": "manager",
        "ProviderStack": "stack",
        "start_provider_stack": "stack",
        "DevAccount": "state",
        "DevnetState": "state",
        "ProviderStackState": "state",
        "default_state_file": "state",
    },
)
