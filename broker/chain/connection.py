"""Connecting to a JSON-RPC node."""

from __future__ import annotations

from urllib.parse import urlsplit

import requests
from web3 import Web3
from web3.exceptions import Web3Exception

from broker._exceptions import ConfigError, RPCError
from broker.chain.errors import ChainIdMismatchError

__all__ = ["connect", "redact_url"]


def redact_url(url: str) -> str:
    """``scheme://host[:port]`` of ``url``: paths and queries often carry API keys, so messages
    show only this part."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


def connect(rpc_url: str, *, timeout: float = 30, expected_chain_id: int | None = None) -> Web3:
    """Open an HTTP JSON-RPC connection and check that the node answers.

    Args:
        rpc_url: ``http(s)://`` URL of the node.
        timeout: per-request timeout in seconds.
        expected_chain_id: when given, the node's ``eth_chainId`` must equal it.

    Returns:
        A connected :class:`~web3.Web3` (HTTPProvider).

    Raises:
        ConfigError: the URL is not http(s).
        RPCError: the node cannot be reached or does not answer JSON-RPC.
        ChainIdMismatchError: the chain id differs from ``expected_chain_id``.
    """
    parts = urlsplit(rpc_url or "")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"invalid RPC URL {rpc_url!r}: expected http(s)://host[:port]/...")
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))
    try:
        chain_id = int(w3.eth.chain_id)
    except (requests.exceptions.RequestException, OSError, Web3Exception, ValueError) as exc:
        raise RPCError(
            f"cannot reach the RPC node at {redact_url(rpc_url)} ({type(exc).__name__})"
        ) from None
    if expected_chain_id is not None and chain_id != expected_chain_id:
        raise ChainIdMismatchError(
            f"the RPC node at {redact_url(rpc_url)} serves chain {chain_id}, "
            f"expected {expected_chain_id}"
        )
    return w3
