"""``create_broker``: the entry point that wires connection, signer, sender and sub-brokers.

Mirrors the SDK's ``createZGComputeNetworkBroker`` (``user-broker.md`` §1.3–§1.5) with explicit
network selection instead of chain-id guessing: the preset (or, for ``devnet``, the devnet state
file) gives the RPC URL and contract addresses, explicit arguments and ``ZG_*`` settings override
them, the node's chain id is checked against the preset, and the inference service name is read
from ``LedgerManager.getServiceInfo(inference_address).fullName`` (never hard-coded).

``create_broker`` builds the inference broker (:class:`~broker.inference.broker.InferenceBroker`)
directly; the inference package does not import this module (dependencies flow one way).
"""

from __future__ import annotations

import logging
from decimal import Decimal
from pathlib import Path
from typing import Any

from web3 import Web3

from broker.chain.addresses import checksum_address
from broker.chain.connection import connect
from broker.chain.contracts import InferenceServingContract, LedgerManagerContract
from broker.chain.keys import Wallet, key_source, load_wallet
from broker.chain.sender import TransactionSender
from broker.config.chain_state import LOCAL_CHAIN_IDS, chain_state_dir, local_chain_identity
from broker.config.local_network import resolve_endpoints
from broker.config.settings import Settings, load_settings
from broker.inference.broker import InferenceBroker
from broker.ledger.broker import LedgerBroker
from broker.ledger.errors import UnregisteredServiceError

__all__ = [
    "Broker",
    "ReadOnlyBroker",
    "ResolvedNetwork",
    "create_broker",
    "create_read_only_broker",
    "devnet_fallback_key",
    "resolve_network",
]

logger = logging.getLogger(__name__)


class ResolvedNetwork:
    """The network a broker talks to.

    Attributes:
        name: preset name (``mainnet``, ``devnet``...).
        rpc_url: JSON-RPC URL.
        chain_id: the chain id the node must serve (``None``: not checked).
        ledger_address / inference_address: checksummed contract addresses.
        dev_accounts: for ``devnet``, the state's dev accounts (address, private_key); else ``[]``.
    """

    def __init__(
        self,
        name: str,
        rpc_url: str,
        chain_id: int | None,
        ledger_address: str,
        inference_address: str,
        dev_accounts: list[Any] | None = None,
    ) -> None:
        self.name = name
        self.rpc_url = rpc_url
        self.chain_id = chain_id
        self.ledger_address = ledger_address
        self.inference_address = inference_address
        self.dev_accounts = list(dev_accounts or [])

    def __repr__(self) -> str:
        return (
            f"ResolvedNetwork(name={self.name!r}, chain_id={self.chain_id}, "
            f"ledger={self.ledger_address}, inference={self.inference_address})"
        )


def resolve_network(
    network: str | None = None,
    *,
    rpc_url: str | None = None,
    ledger_address: str | None = None,
    inference_address: str | None = None,
    settings: Settings | None = None,
) -> ResolvedNetwork:
    """Work out RPC URL, chain id and addresses without connecting.

    Precedence: explicit arguments > ``settings`` (``ZG_*`` env, config file) > the preset; for
    ``devnet`` the preset values come from the devnet's state file
    (:func:`broker.config.local_network.resolve_endpoints`, the resolver the gateway uses too). The
    chain id is not checked (``chain_id=None``) when a custom RPC URL is given explicitly.

    Raises:
        ConfigError: unknown network, no RPC URL or addresses, devnet state missing.
        InvalidAddressError: a malformed address override.
    """
    settings = settings or load_settings()
    ends = resolve_endpoints(
        network or settings.network,
        rpc_url=rpc_url or settings.rpc_url,
        ledger_address=ledger_address or settings.ledger_address,
        inference_address=inference_address or settings.inference_address,
    )
    return ResolvedNetwork(
        ends.name,
        ends.rpc_url,
        ends.chain_id,
        checksum_address(ends.ledger_address or "", field="ledger contract address"),
        checksum_address(ends.inference_address, field="inference contract address"),
        list(ends.dev_accounts),
    )


def devnet_fallback_key(
    net: ResolvedNetwork, private_key: str | None = None, *, settings: Settings | None = None
) -> str | None:
    """The devnet's first dev account key when ``net`` is the devnet and no key is configured
    (no ``private_key``, no ``ZG_PRIVATE_KEY``, no keystore); ``None`` otherwise. The key is public
    (anvil's well-known test mnemonic); the caller announces its use.

    Args:
        net: the resolved network. private_key: an explicit key, if any. settings: where
            ``ZG_PRIVATE_KEY`` / the keystore path come from.

    Returns:
        The ``0x`` hex key, or ``None``.
    """
    if net.name != "devnet" or not net.dev_accounts:
        return None
    if key_source(private_key, settings=settings) is not None:
        return None
    key = net.dev_accounts[0].private_key
    return key.get_secret_value() if hasattr(key, "get_secret_value") else str(key)


def _service_name(ledger_contract: LedgerManagerContract, inference_address: str) -> str:
    info = ledger_contract.get_service_info(inference_address)
    if not info.full_name:
        raise UnregisteredServiceError(
            f"inference contract {inference_address} is not registered in LedgerManager "
            f"{ledger_contract.address}; check the contract addresses"
        )
    return info.full_name


class ReadOnlyBroker:
    """A broker without a signer: views only (``user-broker.md`` §1.5).

    Attributes:
        network: :class:`ResolvedNetwork`.
        w3: the connected :class:`~web3.Web3`.
        ledger_contract / inference_contract: read-only wrappers (writes raise
            ``SignerRequiredError``).
        service_name: the inference service's on-chain name (``inference-v1.0``).
    """

    def __init__(
        self,
        network: ResolvedNetwork,
        w3: Web3,
        ledger_contract: LedgerManagerContract,
        inference_contract: InferenceServingContract,
        service_name: str,
    ) -> None:
        self.network = network
        self.w3 = w3
        self.ledger_contract = ledger_contract
        self.inference_contract = inference_contract
        self.service_name = service_name

    def __repr__(self) -> str:
        return f"{type(self).__name__}(network={self.network.name!r})"


class Broker(ReadOnlyBroker):
    """Everything for one account on one network.

    Attributes:
        address: the account (checksummed).
        sender: its :class:`~broker.chain.sender.TransactionSender` (shared by every write).
        ledger: :class:`~broker.ledger.broker.LedgerBroker`.
        state_dir: the folder for state that belongs to this chain (the fee store
            ``fees.sqlite``): ``$ZG_HOME/chains/<network>-<chain id>-<ledger[:10]>[-<genesis>]``
            (:func:`broker.config.chain_state.chain_state_dir`; a devnet's includes its genesis
            hash, so a new devnet never sees an old one's fees).
        inference: the :class:`~broker.inference.broker.InferenceBroker` of this account
            (built by :func:`create_broker`; ``None`` on a broker built by hand until set).
        (plus the :class:`ReadOnlyBroker` attributes)
    """

    inference: InferenceBroker | None = None
    state_dir: Path | None = None

    def __init__(
        self,
        network: ResolvedNetwork,
        w3: Web3,
        wallet: Wallet,
        sender: TransactionSender,
        ledger_contract: LedgerManagerContract,
        inference_contract: InferenceServingContract,
        service_name: str,
    ) -> None:
        super().__init__(network, w3, ledger_contract, inference_contract, service_name)
        self.wallet = wallet
        self.address = wallet.address
        self.sender = sender
        self.ledger = LedgerBroker(ledger_contract, inference_contract, {"inference": service_name})
        self.inference = None

    def __repr__(self) -> str:
        return f"Broker(network={self.network.name!r}, address={self.address})"


def create_read_only_broker(
    network: str | None = None,
    *,
    rpc_url: str | None = None,
    ledger_address: str | None = None,
    inference_address: str | None = None,
    settings: Settings | None = None,
) -> ReadOnlyBroker:
    """Connect without a key (views only). Arguments as :func:`create_broker`.

    Raises:
        ConfigError, ChainIdMismatchError, RPCError, UnregisteredServiceError.
    """
    net = resolve_network(
        network,
        rpc_url=rpc_url,
        ledger_address=ledger_address,
        inference_address=inference_address,
        settings=settings,
    )
    w3 = connect(net.rpc_url, expected_chain_id=net.chain_id)
    ledger = LedgerManagerContract(w3, net.ledger_address)
    inference = InferenceServingContract(w3, net.inference_address)
    return ReadOnlyBroker(net, w3, ledger, inference, _service_name(ledger, net.inference_address))


def create_broker(
    private_key: str | None = None,
    *,
    network: str | None = None,
    rpc_url: str | None = None,
    ledger_address: str | None = None,
    inference_address: str | None = None,
    gas_price: int | None = None,
    max_gas_price: int | None = None,
    gas_bump: Decimal | str | None = None,
    receipt_timeout: float | None = None,
    settings: Settings | None = None,
    wallet: Wallet | None = None,
) -> Broker:
    """Create a broker for one account.

    Args:
        private_key: hex key; else ``ZG_PRIVATE_KEY``, else the encrypted keystore
            (:func:`broker.chain.keys.load_wallet`); on ``devnet`` with none of them, the devnet's
            first dev account (a public anvil key), announced with a logging warning (as the CLI
            does).
        network: preset name; default ``settings.network`` (``ZG_NETWORK``, config, ``mainnet``).
            ``devnet`` reads RPC and addresses from the devnet state file.
        rpc_url / ledger_address / inference_address: overrides (win over settings and preset).
            An explicit RPC URL disables the chain-id check.
        gas_price / max_gas_price: neuron per gas (see :class:`TransactionSender`).
        gas_bump: multiplier per replacement (> 1). receipt_timeout: seconds.
        settings: a :class:`~broker.config.settings.Settings` (default: loaded from env/config).
        wallet: an already-resolved signer (wins over ``private_key``).

    Returns:
        :class:`Broker` with ``.ledger`` and ``.inference`` ready.

    Raises:
        ConfigError: unknown network or missing addresses; ``ChainIdMismatchError`` when the node
            serves another chain; ``UnregisteredServiceError`` when the inference contract is not
            registered in the LedgerManager.
        KeyStoreError: no key / wrong password / malformed key.
        RPCError: the node is unreachable.
    """
    settings = settings or load_settings()
    net = resolve_network(
        network,
        rpc_url=rpc_url,
        ledger_address=ledger_address,
        inference_address=inference_address,
        settings=settings,
    )
    if wallet is None and private_key is None:
        fallback = devnet_fallback_key(net, settings=settings)
        if fallback is not None:
            logger.warning(
                "no key configured: using devnet dev account %s (public anvil key)",
                net.dev_accounts[0].address,
            )
            private_key = fallback
    signer = wallet or load_wallet(private_key, settings=settings)
    w3 = connect(net.rpc_url, expected_chain_id=net.chain_id)
    sender = TransactionSender(
        w3,
        signer,
        gas_price=gas_price if gas_price is not None else settings.gas_price,
        max_gas_price=max_gas_price if max_gas_price is not None else settings.max_gas_price,
        gas_bump=Decimal(str(gas_bump)) if gas_bump is not None else settings.gas_bump,
        receipt_timeout=receipt_timeout
        if receipt_timeout is not None
        else settings.receipt_timeout,
        max_bumps=settings.max_bumps,
    )
    ledger = LedgerManagerContract(w3, net.ledger_address, sender)
    inference = InferenceServingContract(w3, net.inference_address, sender)
    broker = Broker(
        net, w3, signer, sender, ledger, inference, _service_name(ledger, net.inference_address)
    )
    chain_id = net.chain_id if net.chain_id is not None else int(w3.eth.chain_id)
    broker.state_dir = chain_state_dir(
        net.name,
        chain_id,
        net.ledger_address,
        local_chain_identity(w3) if chain_id in LOCAL_CHAIN_IDS else None,
    )
    broker.inference = InferenceBroker.from_broker(broker)
    logger.debug("broker ready: %r", broker)
    return broker
