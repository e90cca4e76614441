"""Settings, resolved from (highest first): explicit arguments, ``ZG_*`` environment variables,
the JSON config file, and the defaults below.

The config file is ``$ZG_HOME/config.json`` (default ``~/.0g-broker/config.json``), written by
``0g-broker setup-network`` with mode 0600. It never holds a private key: keys live in the encrypted
keystore (``0g-broker login``) or in the ``ZG_PRIVATE_KEY`` environment variable.
"""

from __future__ import annotations

import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    JsonConfigSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

__all__ = ["Settings", "broker_home", "config_file", "load_settings", "save_config"]


def broker_home() -> Path:
    """The directory for config, keystore, devnet state and local databases.

    ``$ZG_HOME`` when set, else ``~/.0g-broker``. Not created here.
    """
    return Path(os.environ.get("ZG_HOME") or Path.home() / ".0g-broker").expanduser()


def config_file() -> Path:
    """Path of the JSON config file: ``$ZG_CONFIG_FILE`` or ``<home>/config.json``."""
    return Path(os.environ.get("ZG_CONFIG_FILE") or broker_home() / "config.json").expanduser()


class Settings(BaseSettings):
    """All user-side settings. Environment variables use the prefix ``ZG_`` (``ZG_NETWORK``,
    ``ZG_RPC_URL``, ``ZG_PRIVATE_KEY``...)."""

    model_config = SettingsConfigDict(env_prefix="ZG_", extra="ignore", validate_default=True)

    network: str = Field(
        "mainnet",
        description="Network preset: mainnet (16661), testnet (16602), testnet-dev, hardhat, "
        "devnet.",
    )
    rpc_url: str | None = Field(
        None, description="JSON-RPC URL; overrides the preset's (and the devnet state's) URL."
    )
    ledger_address: str | None = Field(
        None, description="LedgerManager address; overrides the preset."
    )
    inference_address: str | None = Field(
        None, description="InferenceServing address; overrides the preset."
    )
    private_key: SecretStr | None = Field(
        None,
        description="Hex private key (CI and services). Prefer the encrypted keystore for people.",
    )
    keystore: Path | None = Field(
        None, description="Encrypted keystore file (v3); default <home>/keystore.json."
    )
    keystore_password: SecretStr | None = Field(
        None, description="Password of the keystore, for non-interactive use."
    )
    gas_price: int | None = Field(
        None, ge=0, description="Fixed gas price in neuron (wei); default: the node's eth_gasPrice."
    )
    max_gas_price: int | None = Field(
        None, ge=0, description="Cap in neuron for bump-and-replace; default 10x the first price."
    )
    gas_bump: Decimal = Field(
        Decimal("1.125"), gt=1, description="Multiplier applied to the gas price on each bump."
    )
    receipt_timeout: float = Field(
        120.0, gt=0, description="Seconds to wait for a receipt before bumping and replacing."
    )
    max_bumps: int = Field(5, ge=0, description="Bump-and-replace attempts before giving up.")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (
            init_settings,
            env_settings,
            JsonConfigSettingsSource(settings_cls, json_file=config_file()),
        )

    def keystore_path(self) -> Path:
        """The keystore file in use: :attr:`keystore` or ``<home>/keystore.json``."""
        return (self.keystore or broker_home() / "keystore.json").expanduser()


def load_settings(**overrides: Any) -> Settings:
    """Build :class:`Settings`; keyword arguments that are not ``None`` win over every source."""
    return Settings(**{k: v for k, v in overrides.items() if v is not None})


def save_config(values: dict[str, Any]) -> Path:
    """Merge ``values`` into the JSON config file (mode 0600) and return its path.

    Keys other than those given are preserved (unlike the reference CLI's ``setup-network``, which
    deletes the whole file). ``private_key`` is refused: keys never go into the config file.

    Raises:
        ValueError: ``values`` contains ``private_key`` or ``keystore_password``.
    """
    if "private_key" in values or "keystore_password" in values:
        raise ValueError("secrets are never written to the config file")
    path = config_file()
    current: dict[str, Any] = {}
    if path.exists():
        try:
            current = json.loads(path.read_text())
        except (OSError, ValueError):
            current = {}
    current.update(values)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(current, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.replace(tmp, path)
    return path
