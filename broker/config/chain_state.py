"""Where state that belongs to one chain lives: ``$ZG_HOME/chains/<tag>/``.

Unsettled fees, issued token ids and verification logs only mean something on the chain (and
contracts) they were recorded against. Keying their files by chain keeps one chain's fees out of
another's accounting, e.g. after ``devnet down`` / ``devnet up``: the devnet always has chain id
31337 and the same contract addresses, so for local chains the tag also carries the genesis block's
hash, which differs for every anvil started.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from broker.config.settings import broker_home

__all__ = [
    "INSTANCE_MARKER",
    "LOCAL_CHAIN_IDS",
    "chain_state_dir",
    "chain_tag",
    "genesis_hash",
    "local_chain_identity",
]

#: Chain ids of local development chains (anvil / hardhat), whose contracts are redeployed at the
#: same addresses on every start.
LOCAL_CHAIN_IDS = frozenset({31337, 1337})


def genesis_hash(w3: Any, *, attempts: int = 3) -> str:
    """The ``0x`` hash of block 0 from a connected :class:`~web3.Web3`.

    It tells two local chains with the same chain id and contract addresses apart, so it is never
    silently left out: the read is tried ``attempts`` times (0.5 s apart) and then refused.

    Raises:
        ChainError: the node did not give block 0 (keying state without it would mix one devnet's
            fees into the next one's).
    """
    import time

    from broker._exceptions import ChainError

    last: Exception | None = None
    for attempt in range(max(1, attempts)):
        try:
            value = w3.eth.get_block(0).get("hash")
        except Exception as exc:  # noqa: BLE001 - any node/transport failure: try again
            last, value = exc, None
        if value is not None:
            if isinstance(value, (bytes, bytearray)):
                return "0x" + bytes(value).hex()
            text = str(value)
            return text if text.startswith("0x") else "0x" + text
        if attempt + 1 < attempts:
            time.sleep(0.5)
    reason = f" ({type(last).__name__})" if last is not None else ""
    raise ChainError(f"the local chain did not give its genesis block{reason}; is it running?")


#: Address whose storage slot 0 holds a random 32-byte id that ``devnet up`` writes
#: (``anvil_setStorageAt``): two devnets started within one second share their genesis block (same
#: timestamp, accounts and contracts), this id still tells them apart. No code lives there.
INSTANCE_MARKER = "0x0000000000000000000000000000000000000beE"


def local_chain_identity(w3: Any) -> str:
    """The identity of a local chain: :func:`genesis_hash`, with the devnet's instance id
    (:data:`INSTANCE_MARKER`) mixed in when one was written.

    Returns:
        ``0x`` + 64 hex characters.

    Raises:
        ChainError: block 0 could not be read (see :func:`genesis_hash`).
    """
    import hashlib

    genesis = genesis_hash(w3)
    try:
        slot = bytes(w3.eth.get_storage_at(INSTANCE_MARKER, 0))
    except Exception:  # noqa: BLE001 - a chain without the marker (plain anvil / hardhat)
        slot = b""
    if not slot.strip(b"\0"):
        return genesis
    return "0x" + hashlib.sha256(bytes.fromhex(genesis[2:]) + slot).hexdigest()


def chain_tag(
    network: str, chain_id: int | None, ledger_address: str, genesis: str | None = None
) -> str:
    """A folder name for one chain and contract set: ``<network>-<chain id>-<ledger[:10]>``, plus
    ``-<genesis[2:10]>`` for local chains (``chain_id`` in :data:`LOCAL_CHAIN_IDS`) when
    ``genesis`` is given.

    Args:
        network: preset name (``mainnet``, ``devnet``...). chain_id: the chain id (``None``:
            unknown, written ``0``). ledger_address: the LedgerManager address. genesis: block 0's
            hash (``0x``...).

    Returns:
        e.g. ``"mainnet-16661-0x2dE54c84"`` or ``"devnet-31337-0x5FbDB231-3f1c9a0b"``.
    """
    name = re.sub(r"[^A-Za-z0-9_.]+", "_", network or "custom")
    tag = f"{name}-{int(chain_id or 0)}-{ledger_address[:10]}"
    if genesis and int(chain_id or 0) in LOCAL_CHAIN_IDS:
        tag += "-" + genesis.lower().removeprefix("0x")[:8]
    return tag


def chain_state_dir(
    network: str, chain_id: int | None, ledger_address: str, genesis: str | None = None
) -> Path:
    """``$ZG_HOME/chains/<chain_tag(...)>`` (not created here); see :func:`chain_tag`."""
    return broker_home() / "chains" / chain_tag(network, chain_id, ledger_address, genesis)
