"""The embedded devnet: anvil on 127.0.0.1 with our LedgerManager and InferenceServing deployed at
the TS SDK's hardhat addresses (contracts.md A4)."""

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
