"""The devnet state file: where the running devnet is and what is deployed on it.

Default path ``$ZG_HOME/devnet/state.json`` (mode 0600, written atomically). It records anvil's
well-known dev keys (public test keys, never real funds), which :class:`DevAccount` hides from
reprs. The part the library reads (RPC URL, chain id, addresses, accounts) is
:class:`broker.config.local_network.LocalNetworkState`; :class:`DevnetState` extends it.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from broker.config.local_network import DevAccount, LocalNetworkState, local_network_file
from broker.devnet.errors import DevnetError, DevnetNotRunningError

__all__ = [
    "DevAccount",
    "DevnetState",
    "ProviderStackState",
    "default_state_file",
    "read_state",
    "remove_state",
    "write_state",
]


class ProviderStackState(BaseModel):
    """What the devnet state records about a provider stack (no secrets).

    Fields: ``address`` (provider wallet), ``tee_signer_address``, ``model``, ``gateway_url``,
    ``worker_url``, ``price_per_image`` (neuron), ``home`` (its folder: keys, database, logs),
    ``gateway_pid`` / ``worker_pid`` and ``gateway_log`` / ``worker_log`` (detached stacks only).
    """

    model_config = ConfigDict(frozen=True)

    address: str
    tee_signer_address: str
    model: str
    gateway_url: str
    worker_url: str
    price_per_image: int
    home: Path
    gateway_pid: int | None = None
    worker_pid: int | None = None
    gateway_log: Path | None = None
    worker_log: Path | None = None

    def pids(self) -> list[int]:
        """The recorded process ids (empty for an in-process stack)."""
        return [p for p in (self.worker_pid, self.gateway_pid) if p]


class DevnetState(LocalNetworkState):
    """Everything a client needs to use the devnet: the
    :class:`~broker.config.local_network.LocalNetworkState` the library reads (the devnet provides
    that data; the library never imports this package) plus the devnet's own fields.

    Fields: ``rpc_url`` (``http://127.0.0.1:<port>``), ``chain_id`` (31337), ``ledger_address`` and
    ``inference_address`` (proxy addresses, checksummed), ``owner`` (deployer = dev account 0),
    ``accounts`` (funded dev accounts), ``anvil_pid``, ``port``, ``started_at`` (UTC), ``log_file``
    (anvil's output), ``detached`` (whether anvil outlives the process that started it),
    ``provider`` (the provider stack started by ``devnet up --with-provider``, if any).
    """

    model_config = ConfigDict(frozen=True)

    owner: str
    anvil_pid: int
    port: int
    started_at: datetime
    log_file: Path | None = None
    detached: bool = False
    provider: ProviderStackState | None = None

    def owner_key(self) -> str:
        """The contract owner's private key (hex), a public anvil dev key: the owner sends the
        owner-level calls such as ``acknowledgeTEESignerByOwner`` (``contracts.md`` A3).

        Raises:
            DevnetError: the state lists no key for :attr:`owner`.
        """
        for account in self.accounts:
            if account.address.lower() == self.owner.lower():
                return account.private_key.get_secret_value()
        raise DevnetError("the devnet state has no key for the contract owner")

    def public_dict(self, *, show_keys: bool = False) -> dict[str, Any]:
        """JSON-ready dict; private keys are dropped unless ``show_keys``."""
        data = self.model_dump(mode="json")
        if not show_keys:
            data["accounts"] = [{"address": a["address"]} for a in data["accounts"]]
        return data


def default_state_file() -> Path:
    """``<broker_home()>/devnet/state.json``
    (:func:`broker.config.local_network.local_network_file`)."""
    return local_network_file()


def write_state(state: DevnetState, path: Path | None = None) -> Path:
    """Write ``state`` as JSON to ``path`` (default :func:`default_state_file`) atomically,
    mode 0600.

    Returns the path written.
    """
    path = Path(path or default_state_file())
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(state.model_dump_json(indent=2))
        fh.write("\n")
    os.replace(tmp, path)
    return path


def read_state(path: Path | None = None) -> DevnetState:
    """Read the state file.

    Raises:
        DevnetNotRunningError: the file does not exist.
        DevnetError: the file is unreadable or malformed.
    """
    path = Path(path or default_state_file())
    try:
        raw = path.read_text()
    except FileNotFoundError:
        raise DevnetNotRunningError("devnet is not running; run `0g-broker devnet up`") from None
    except OSError as exc:
        raise DevnetError(f"cannot read devnet state {path}: {exc.strerror}") from None
    try:
        return DevnetState.model_validate(json.loads(raw))
    except (ValueError, ValidationError) as exc:
        raise DevnetError(f"devnet state {path} is malformed: {str(exc).splitlines()[0]}") from None


def remove_state(path: Path | None = None) -> bool:
    """Delete the state file; True when one existed."""
    path = Path(path or default_state_file())
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return False
