"""Network presets and settings."""

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
from broker.config.settings import Settings, broker_home, config_file, load_settings, save_config

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
