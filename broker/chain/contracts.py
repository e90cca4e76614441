"""Thin typed wrappers around the LedgerManager and InferenceServing contracts.

Reads go through ``eth_call`` (reverts decoded into typed errors), writes through the account's
:class:`~broker.chain.sender.TransactionSender`. Struct return values are decoded into frozen
dataclasses whose fields follow the ABI tuple order of ``contracts.md`` A2.2 and A3.2 (snake_case).
All amounts are ints in neuron; times are Unix seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from web3 import Web3
from web3.contract import Contract
from web3.contract.contract import ContractFunction
from web3.types import TxReceipt

from broker.chain.addresses import checksum_address
from broker.chain.errors import SignerRequiredError
from broker.chain.sender import TransactionSender, call_view

__all__ = [
    "Account",
    "InferenceServingContract",
    "Ledger",
    "LedgerManagerContract",
    "Refund",
    "Service",
    "ServiceInfo",
]


@dataclass(frozen=True)
class Ledger:
    """LedgerManager ``Ledger`` struct (``contracts.md`` A2.2), amounts in neuron.

    ``locked_balance`` (total − available) is the part sitting in service sub-accounts.
    """

    user: str
    available_balance: int
    total_balance: int
    additional_info: str

    @property
    def locked_balance(self) -> int:
        return self.total_balance - self.available_balance

    @classmethod
    def from_tuple(cls, t: Sequence[Any]) -> Ledger:
        return cls(Web3.to_checksum_address(t[0]), int(t[1]), int(t[2]), str(t[3]))


@dataclass(frozen=True)
class ServiceInfo:
    """LedgerManager ``ServiceInfo`` registry entry (``contracts.md`` A2.2).

    An unregistered address gives the zero struct (``full_name == ""``).
    """

    service_address: str
    service_contract: str
    service_type: str
    version: str
    full_name: str
    description: str
    is_recommended: bool
    registered_at: int

    @classmethod
    def from_tuple(cls, t: Sequence[Any]) -> ServiceInfo:
        return cls(
            Web3.to_checksum_address(t[0]),
            Web3.to_checksum_address(t[1]),
            str(t[2]),
            str(t[3]),
            str(t[4]),
            str(t[5]),
            bool(t[6]),
            int(t[7]),
        )


@dataclass(frozen=True)
class Refund:
    """InferenceServing ``Refund`` (``contracts.md`` A3.2): amount in neuron, created_at Unix s."""

    index: int
    amount: int
    created_at: int
    processed: bool

    @classmethod
    def from_tuple(cls, t: Sequence[Any]) -> Refund:
        return cls(int(t[0]), int(t[1]), int(t[2]), bool(t[3]))


@dataclass(frozen=True)
class Account:
    """InferenceServing ``Account`` sub-account (``contracts.md`` A3.2), amounts in neuron.

    ``refunds`` is the raw array; only ``refunds[:valid_refunds_length]`` is meaningful (see
    :attr:`active_refunds`).
    """

    user: str
    provider: str
    nonce: int
    balance: int
    pending_refund: int
    refunds: tuple[Refund, ...]
    additional_info: str
    acknowledged: bool
    valid_refunds_length: int
    generation: int
    revoked_bitmap: int

    @property
    def active_refunds(self) -> tuple[Refund, ...]:
        """The refunds in ``[0, valid_refunds_length)`` that are not processed."""
        return tuple(r for r in self.refunds[: self.valid_refunds_length] if not r.processed)

    @property
    def locked_balance(self) -> int:
        """Provider-side locked balance: ``balance − pending_refund`` (neuron)."""
        return self.balance - self.pending_refund

    @classmethod
    def from_tuple(cls, t: Sequence[Any]) -> Account:
        return cls(
            Web3.to_checksum_address(t[0]),
            Web3.to_checksum_address(t[1]),
            int(t[2]),
            int(t[3]),
            int(t[4]),
            tuple(Refund.from_tuple(r) for r in t[5]),
            str(t[6]),
            bool(t[7]),
            int(t[8]),
            int(t[9]),
            int(t[10]),
        )


@dataclass(frozen=True)
class Service:
    """InferenceServing ``Service`` (``contracts.md`` A3.2); prices in neuron per token."""

    provider: str
    service_type: str
    url: str
    input_price: int
    output_price: int
    updated_at: int
    model: str
    verifiability: str
    additional_info: str
    tee_signer_address: str
    tee_signer_acknowledged: bool

    @classmethod
    def from_tuple(cls, t: Sequence[Any]) -> Service:
        return cls(
            Web3.to_checksum_address(t[0]),
            str(t[1]),
            str(t[2]),
            int(t[3]),
            int(t[4]),
            int(t[5]),
            str(t[6]),
            str(t[7]),
            str(t[8]),
            Web3.to_checksum_address(t[9]),
            bool(t[10]),
        )


class _ContractWrapper:
    abi_name: str

    def __init__(self, w3: Web3, address: str, sender: TransactionSender | None = None) -> None:
        from broker.chain.artifacts import load_abi

        self.w3 = w3
        self.address = checksum_address(address, field=f"{self.abi_name} address")
        self.sender = sender
        abi = load_abi(self.abi_name)
        if isinstance(abi, dict):
            abi = abi["abi"]
        self.contract: Contract = w3.eth.contract(address=self.address, abi=abi)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(address={self.address})"

    def _call(self, fn: ContractFunction, *, from_: str | None = None) -> Any:
        if from_ is None and self.sender is not None:
            from_ = self.sender.address
        return call_view(fn, from_=from_)

    def _send(self, fn: ContractFunction, *, value: int = 0) -> TxReceipt:
        if self.sender is None:
            raise SignerRequiredError(
                f"{fn.fn_name} needs a signer; this {self.abi_name} wrapper is read-only"
            )
        return self.sender.send(fn, value=value)


class LedgerManagerContract(_ContractWrapper):
    """LedgerManager (``contracts.md`` A2.5). Writes raise
    :class:`~broker.chain.errors.SignerRequiredError` without a sender; reverts raise the typed
    :class:`~broker.chain.errors.ContractRevertError` subclass."""

    abi_name = "LedgerManager"

    # views
    def get_ledger(self, user: str) -> Ledger:
        """``getLedger(user)``; raises ``LedgerNotExistsError`` when there is none."""
        return Ledger.from_tuple(self._call(self.contract.functions.getLedger(user)))

    def get_ledger_providers(self, user: str, service_name: str) -> list[str]:
        """``getLedgerProviders(user, serviceName)`` → checksummed provider addresses."""
        result = self._call(self.contract.functions.getLedgerProviders(user, service_name))
        return [Web3.to_checksum_address(a) for a in result]

    def get_service_info(self, service_address: str) -> ServiceInfo:
        """``getServiceInfo(address)``; the zero struct when unregistered."""
        return ServiceInfo.from_tuple(
            self._call(self.contract.functions.getServiceInfo(service_address))
        )

    def constant(self, name: str) -> int:
        """A public constant getter (``MIN_ACCOUNT_BALANCE``, ``MIN_TRANSFER_AMOUNT``, ...)."""
        return int(self._call(getattr(self.contract.functions, name)()))

    # writes (amounts in neuron)
    def add_ledger(self, additional_info: str, value: int) -> TxReceipt:
        """``addLedger(additionalInfo)`` payable with ``value`` neuron."""
        return self._send(self.contract.functions.addLedger(additional_info), value=value)

    def deposit_fund(self, value: int) -> TxReceipt:
        """``depositFund()`` payable."""
        return self._send(self.contract.functions.depositFund(), value=value)

    def deposit_fund_for(self, recipient: str, value: int) -> TxReceipt:
        """``depositFundFor(recipient)`` payable."""
        return self._send(self.contract.functions.depositFundFor(recipient), value=value)

    def refund(self, amount: int) -> TxReceipt:
        """``refund(amount)``: ledger available balance → wallet."""
        return self._send(self.contract.functions.refund(amount))

    def transfer_fund(self, provider: str, service_name: str, amount: int) -> TxReceipt:
        """``transferFund(provider, serviceName, amount)`` (A2.6)."""
        return self._send(self.contract.functions.transferFund(provider, service_name, amount))

    def retrieve_fund(self, providers: Sequence[str], service_name: str) -> TxReceipt:
        """``retrieveFund(providers, serviceName)`` (≤ 20 providers)."""
        return self._send(self.contract.functions.retrieveFund(list(providers), service_name))

    def delete_ledger(self) -> TxReceipt:
        """``deleteLedger()``."""
        return self._send(self.contract.functions.deleteLedger())


class InferenceServingContract(_ContractWrapper):
    """InferenceServing (``contracts.md`` A3.3): the user-facing subset plus provider writes."""

    abi_name = "InferenceServing"

    # views
    def get_account(self, user: str, provider: str) -> Account:
        """``getAccount(user, provider)``; raises ``AccountNotExistsError`` when absent."""
        return Account.from_tuple(self._call(self.contract.functions.getAccount(user, provider)))

    def account_exists(self, user: str, provider: str) -> bool:
        """``accountExists(user, provider)``."""
        return bool(self._call(self.contract.functions.accountExists(user, provider)))

    def get_pending_refund(self, user: str, provider: str) -> int:
        """``getPendingRefund(user, provider)`` in neuron."""
        return int(self._call(self.contract.functions.getPendingRefund(user, provider)))

    def get_service(self, provider: str) -> Service:
        """``getService(provider)``; raises ``ServiceNotExistError`` when absent."""
        return Service.from_tuple(self._call(self.contract.functions.getService(provider)))

    def get_all_services(self, offset: int = 0, limit: int = 50) -> tuple[list[Service], int]:
        """``getAllServices(offset, limit)`` → (services, total); limit ≤ 50."""
        services, total = self._call(self.contract.functions.getAllServices(offset, limit))
        return [Service.from_tuple(s) for s in services], int(total)

    def service_exists(self, provider: str) -> bool:
        """``serviceExists(provider)``."""
        return bool(self._call(self.contract.functions.serviceExists(provider)))

    def lock_time(self) -> int:
        """``lockTime()`` in seconds."""
        return int(self._call(self.contract.functions.lockTime()))

    def is_token_revoked(self, user: str, provider: str, token_id: int) -> bool:
        """``isTokenRevoked(user, provider, tokenId)`` (bitmap only)."""
        return bool(self._call(self.contract.functions.isTokenRevoked(user, provider, token_id)))

    def get_accounts_by_user(
        self, user: str, offset: int = 0, limit: int = 50
    ) -> tuple[list[Account], int]:
        """``getAccountsByUser(user, offset, limit)`` → (accounts, total)."""
        accounts, total = self._call(self.contract.functions.getAccountsByUser(user, offset, limit))
        return [Account.from_tuple(a) for a in accounts], int(total)

    def get_accounts_by_provider(
        self, provider: str, offset: int = 0, limit: int = 50
    ) -> tuple[list[Account], int]:
        """``getAccountsByProvider(provider, offset, limit)`` → (accounts, total); called from
        ``provider`` (the gateway's view)."""
        accounts, total = self._call(
            self.contract.functions.getAccountsByProvider(provider, offset, limit), from_=provider
        )
        return [Account.from_tuple(a) for a in accounts], int(total)

    def preview_settlement_results(
        self, provider: str, settlements: Sequence[Any]
    ) -> tuple[Any, Any, Any, Any]:
        """``previewSettlementResults(settlements)`` called from ``provider`` →
        (users, failure reasons, partially settled users, amounts), as the contract returns them
        (contracts.md A3)."""
        return tuple(
            self._call(
                self.contract.functions.previewSettlementResults(list(settlements)), from_=provider
            )
        )

    # writes
    def acknowledge_tee_signer_by_owner(self, provider: str) -> TxReceipt:
        """``acknowledgeTEESignerByOwner(provider)``; the sender must be the contract owner."""
        return self._send(self.contract.functions.acknowledgeTEESignerByOwner(provider))

    def revoke_tee_signer_acknowledgement(self, provider: str) -> TxReceipt:
        """``revokeTEESignerAcknowledgement(provider)``; the sender must be the contract owner."""
        return self._send(self.contract.functions.revokeTEESignerAcknowledgement(provider))

    def acknowledge_tee_signer(self, provider: str, acknowledged: bool) -> TxReceipt:
        """``acknowledgeTEESigner(provider, acknowledged)``."""
        return self._send(self.contract.functions.acknowledgeTEESigner(provider, acknowledged))

    def revoke_token(self, provider: str, token_id: int) -> TxReceipt:
        """``revokeToken(provider, tokenId)``."""
        return self._send(self.contract.functions.revokeToken(provider, token_id))

    def revoke_all_tokens(self, provider: str) -> TxReceipt:
        """``revokeAllTokens(provider)``."""
        return self._send(self.contract.functions.revokeAllTokens(provider))

    def add_or_update_service(self, params: Sequence[Any], value: int = 0) -> TxReceipt:
        """``addOrUpdateService(ServiceParams)`` payable; ``params`` in ServiceParams order
        ``(serviceType, url, model, verifiability, inputPrice, outputPrice, additionalInfo,
        teeSignerAddress)``; ``value`` is the stake (100 0G on first registration)."""
        return self._send(self.contract.functions.addOrUpdateService(tuple(params)), value=value)

    def remove_service(self) -> TxReceipt:
        """``removeService()``."""
        return self._send(self.contract.functions.removeService())
