"""The embedded devnet: anvil on 127.0.0.1 with our LedgerManager and InferenceServing deployed at
the TS SDK's hardhat addresses (contracts.md A4), and its state file.

The servers that run on it (the provider stack, ``devnet up --with-provider``, the demo) are
composition code: :mod:`broker.stacks`.
"""

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
        devnet_live,
        fund_new_account,
        load_devnet_state,
        start_devnet,
    )
    from broker.devnet.state import DevAccount, DevnetState, ProviderStackState, default_state_file

__all__ = [
    "AnvilNotFoundError",
    "DevAccount",
    "Devnet",
    "DevnetError",
    "DevnetNotRunningError",
    "DevnetState",
    "PortInUseError",
    "ProviderStackState",
    "default_state_file",
    "devnet_live",
    "fund_new_account",
    "load_devnet_state",
    "start_devnet",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "AnvilNotFoundError": "errors",
        "DevnetError": "errors",
        "DevnetNotRunningError": "errors",
        "PortInUseError": "errors",
        "Devnet": "manager",
        "devnet_live": "manager",
        "fund_new_account": "manager",
        "load_devnet_state": "manager",
        "start_devnet": "manager",
        "DevAccount": "state",
        "DevnetState": "state",
        "ProviderStackState": "state",
        "default_state_file": "state",
    },
)
