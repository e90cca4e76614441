"""The network resolver shared by the user side and the gateway, and the local network it plugs in.

:func:`resolve_endpoints` turns a network name plus overrides into an RPC URL, chain id and contract
addresses. For ``devnet`` the values come from the local network file
(``$ZG_HOME/devnet/state.json``): its format is :class:`LocalNetworkState`, defined here and
extended by the devnet (:class:`broker.devnet.state.DevnetState`), which writes the file. So the
library reads the devnet's data without importing the devnet package (dependencies flow one way).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError, field_serializer

from broker._exceptions import ConfigError
from broker.config.networks import get_preset
from broker.config.settings import broker_home

__all__ = [
    "DevAccount",
    "LocalNetworkState",
    "NetworkEndpoints",
    "local_network_file",
    "read_local_network",
    "resolve_endpoints",
]

_START_HINT = "start one with `0g-broker devnet up`"


class DevAccount(BaseModel):
    """A funded dev account: checksummed ``address`` and its ``private_key`` (hidden in reprs,
    written to the state file as ``0x`` hex because anvil's dev keys are public)."""

    model_config = ConfigDict(frozen=True)

    address: str
    private_key: SecretStr

    @field_serializer("private_key", when_used="json")
    def _dump_key(self, value: SecretStr) -> str:
        return value.get_secret_value()


class LocalNetworkState(BaseModel):
    """What a client needs from the local network file: ``rpc_url``, ``chain_id``,
    ``ledger_address`` and ``inference_address`` (checksummed proxy addresses) and the funded
    ``accounts``. Other fields of the file (the devnet's own) are ignored here."""

    model_config = ConfigDict(frozen=True)

    rpc_url: str
    chain_id: int
    ledger_address: str
    inference_address: str
    accounts: list[DevAccount]


def local_network_file() -> Path:
    """``<broker_home()>/devnet/state.json`` (written by ``0g-broker devnet up``)."""
    return broker_home() / "devnet" / "state.json"


def read_local_network(path: Path | None = None) -> LocalNetworkState:
    """Read the local network file (default :func:`local_network_file`).

    Raises:
        ConfigError: the file is missing, unreadable or malformed (the message says how to start a
            devnet).
    """
    path = Path(path or local_network_file())
    try:
        raw = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"no devnet is running (no {path}); {_START_HINT}") from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read the devnet state {path} ({exc.strerror}); {_START_HINT}"
        ) from None
    try:
        return LocalNetworkState.model_validate(json.loads(raw))
    except (ValueError, ValidationError) as exc:
        raise ConfigError(
            f"the devnet state {path} is malformed ({str(exc).splitlines()[0]}); {_START_HINT}"
        ) from None


@dataclass(frozen=True)
class NetworkEndpoints:
    """Where a network is: preset ``name``, ``rpc_url``, the ``chain_id`` the node must serve
    (``None``: not checked, a custom RPC URL), contract addresses (as given, not checksummed;
    ``ledger_address`` may be ``None`` when not required) and, for the devnet, its
    ``dev_accounts``."""

    name: str
    rpc_url: str
    chain_id: int | None
    ledger_address: str | None
    inference_address: str
    dev_accounts: tuple[DevAccount, ...] = field(default=())


def resolve_endpoints(
    network: str,
    *,
    rpc_url: str | None = None,
    ledger_address: str | None = None,
    inference_address: str | None = None,
    require_ledger: bool = True,
) -> NetworkEndpoints:
    """RPC URL, chain id and addresses of ``network`` without connecting.

    Overrides win over the preset; for ``devnet`` the preset values come from
    :func:`read_local_network` unless every needed value is given. The chain id is not checked
    (``None``) when ``rpc_url`` differs from the preset's.

    Args:
        network: preset name (:func:`broker.config.networks.get_preset`).
        rpc_url / ledger_address / inference_address: overrides.
        require_ledger: the LedgerManager address is needed (the gateway only needs the
            InferenceServing address).

    Raises:
        ConfigError: unknown network, no RPC URL or address, devnet state missing or malformed.
    """
    preset = get_preset(network)
    base_rpc, base_ledger, base_inference = (
        preset.rpc_url,
        preset.ledger_address,
        preset.inference_address,
    )
    chain_id: int | None = preset.chain_id
    accounts: tuple[DevAccount, ...] = ()
    given = rpc_url and inference_address and (ledger_address or not require_ledger)
    if preset.name == "devnet" and not given:
        state = read_local_network()
        base_rpc, base_ledger, base_inference = (
            state.rpc_url,
            state.ledger_address,
            state.inference_address,
        )
        chain_id = int(state.chain_id)
        accounts = tuple(state.accounts)
    rpc = rpc_url or base_rpc
    if rpc_url and rpc_url != base_rpc:
        chain_id = None
    ledger = ledger_address or base_ledger
    inference = inference_address or base_inference
    if not rpc:
        raise ConfigError(f"network {preset.name!r} has no RPC URL; pass rpc_url / --rpc")
    if not inference or (require_ledger and not ledger):
        raise ConfigError(
            f"network {preset.name!r} has no contract addresses; pass ledger_address and "
            "inference_address"
        )
    return NetworkEndpoints(preset.name, rpc, chain_id, ledger or None, inference, accounts)
