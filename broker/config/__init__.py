"""Network presets and settings."""

from __future__ import annotations

from typing import TYPE_CHECKING

from broker._lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover - names for type checkers; loaded on first use
    from broker.config.networks import (
        DEVNET,
        HARDHAT,
        MAINNET,
        PRESETS,
        TESTNET,
        TESTNET_DEV,
        NetworkPreset,
        get_preset,
        preset_for_chain_id,
    )
    from broker.config.settings import (
        Settings,
        broker_home,
        config_file,
        load_settings,
        save_config,
    )

__all__ = [
    "DEVNET",
    "HARDHAT",
    "MAINNET",
    "PRESETS",
    "TESTNET",
    "TESTNET_DEV",
    "NetworkPreset",
    "Settings",
    "broker_home",
    "config_file",
    "get_preset",
    "load_settings",
    "preset_for_chain_id",
    "save_config",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "DEVNET": "networks",
        "HARDHAT": "networks",
        "MAINNET": "networks",
        "PRESETS": "networks",
        "TESTNET": "networks",
        "TESTNET_DEV": "networks",
        "NetworkPreset": "networks",
        "get_preset": "networks",
        "preset_for_chain_id": "networks",
        "Settings": "settings",
        "broker_home": "settings",
        "config_file": "settings",
        "load_settings": "settings",
        "save_config": "settings",
    },
)
