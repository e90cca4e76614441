"""The ledger broker: the user's main account in LedgerManager and its provider sub-accounts.

Method names mirror the SDK's ``broker.ledger`` (``user-broker.md`` §4) in snake_case. Differences
from the SDK, all local (the contract calls are the same):

* amounts are parsed exactly (:func:`broker.units.to_neuron`): 0G as ``str``/``int``/``Decimal``, or
  :class:`~broker.units.Neuron` for neuron; floats are refused;
* every client-side check runs before anything is sent (the minimum to create a ledger,
  ``LedgerExists`` pre-check, the minimum for a new sub-account, available balance for transfers and
  refunds, the 0-or-≥ minimum rule of ``refund``), raising :mod:`broker.ledger.errors` classes. The
  minimums are the deployed contract's own ``MIN_ACCOUNT_BALANCE`` / ``MIN_TRANSFER_AMOUNT``
  (mainnet 3 0G / 1 0G; the Galileo testnet contract has 0.1 0G / 0.01 0G, contracts.md A2.1), read
  once per broker, so no operation the contract accepts is refused locally (the SDK hard-codes
  3 0G for ledger creation and only warns below 1 0G for transfers);
* ``retrieve_fund`` sends providers in batches of at most 20 (§13 item 4);
* writes return :class:`~broker.ledger.models.TxResult` (the SDK returns nothing).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

from broker._exceptions import InputError, TransactionError
from broker.chain.addresses import checksum_address
from broker.chain.contracts import InferenceServingContract, LedgerManagerContract
from broker.chain.errors import ContractRevertError, SignerRequiredError, error_class
from broker.chain.sender import TransactionSender
from broker.ledger.errors import (
    InsufficientLedgerBalanceError,
    InsufficientWalletBalanceError,
    LedgerAlreadyExistsError,
    LedgerNotEmptyError,
    MinimumBalanceError,
    NoLedgerError,
    ProviderNotRegisteredError,
    UnknownServiceError,
)
from broker.ledger.models import (
    LedgerDetail,
    LedgerOverview,
    RefundDetail,
    SubAccountBalance,
    SubAccountDetail,
    TxResult,
)
from broker.units import Amount, format_0g, to_neuron

__all__ = [
    "MAX_ADDITIONAL_INFO_LENGTH",
    "MAX_PROVIDERS_PER_BATCH",
    "MIN_LEDGER_BALANCE",
    "MIN_TRANSFER_AMOUNT",
    "LedgerBroker",
]

#: Minimum to create a ledger, neuron (contract ``MIN_ACCOUNT_BALANCE``, mainnet: 3 0G).
MIN_LEDGER_BALANCE = 3 * 10**18
#: Minimum first transfer to a new provider sub-account, neuron (``MIN_TRANSFER_AMOUNT``: 1 0G).
MIN_TRANSFER_AMOUNT = 10**18
#: Providers per ``retrieveFund`` call (``MAX_PROVIDERS_PER_BATCH``).
MAX_PROVIDERS_PER_BATCH = 20
#: Bytes of ``additionalInfo`` (``MAX_ADDITIONAL_INFO_LENGTH``).
MAX_ADDITIONAL_INFO_LENGTH = 4096


class LedgerBroker:
    """Ledger operations for one account.

    Args:
        ledger_contract: the LedgerManager wrapper (with the account's sender for writes).
        inference_contract: the InferenceServing wrapper (sub-account reads).
        service_names: service type → on-chain service name, e.g. ``{"inference":
            "inference-v1.0"}`` (discovered with ``getServiceInfo``, ``user-broker.md`` §1.4).
        user: the account address; default the sender's.

    Raises:
        SignerRequiredError: neither ``user`` nor a sender on ``ledger_contract``.
    """

    def __init__(
        self,
        ledger_contract: LedgerManagerContract,
        inference_contract: InferenceServingContract,
        service_names: dict[str, str],
        *,
        user: str | None = None,
    ) -> None:
        self.ledger_contract = ledger_contract
        self.inference_contract = inference_contract
        self.service_names = dict(service_names)
        sender: TransactionSender | None = ledger_contract.sender
        if user is None and sender is None:
            raise SignerRequiredError("LedgerBroker needs a signer or a user address")
        self.user = checksum_address(user) if user else sender.address  # type: ignore[union-attr]
        self._constants: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"LedgerBroker(user={self.user})"

    # ------------------------------------------------------------------------- helpers

    def service_name(self, service_type_or_name: str = "inference") -> str:
        """Resolve ``"inference"`` (a type) or ``"inference-v1.0"`` (a full name) to the on-chain
        service name.

        Raises:
            UnknownServiceError: neither a known type nor a known name.
        """
        key = (service_type_or_name or "").strip()
        if key in self.service_names:
            return self.service_names[key]
        if key in self.service_names.values():
            return key
        raise UnknownServiceError(
            f"Service name not available for {service_type_or_name!r} "
            f"(known: {', '.join(sorted(self.service_names)) or 'none'})"
        )

    def _constant(self, name: str, default: int) -> int:
        value = self._constants.get(name)
        if value is None:
            try:
                value = self.ledger_contract.constant(name)
            except ContractRevertError:  # a contract without the getter: the mainnet value
                value = default
            self._constants[name] = value
        return value

    @property
    def min_account_balance(self) -> int:
        """Neuron needed to create a ledger and the smallest non-zero balance a ``refund`` may
        leave: the contract's ``MIN_ACCOUNT_BALANCE()`` (mainnet 3 0G, Galileo testnet 0.1 0G),
        read once and cached; :data:`MIN_LEDGER_BALANCE` when the contract has no such getter.

        Raises:
            RPCError: the node is unreachable.
        """
        return self._constant("MIN_ACCOUNT_BALANCE", MIN_LEDGER_BALANCE)

    @property
    def min_transfer_amount(self) -> int:
        """Neuron needed for the first transfer to a new provider sub-account: the contract's
        ``MIN_TRANSFER_AMOUNT()`` (mainnet 1 0G, Galileo testnet 0.01 0G), read once and cached;
        :data:`MIN_TRANSFER_AMOUNT` when the contract has no such getter.

        Raises:
            RPCError: the node is unreachable.
        """
        return self._constant("MIN_TRANSFER_AMOUNT", MIN_TRANSFER_AMOUNT)

    def _find_ledger(self, user: str | None = None):
        try:
            return self.ledger_contract.get_ledger(user or self.user)
        except error_class("LedgerNotExists"):
            return None

    def _require_ledger(self):
        ledger = self._find_ledger()
        if ledger is None:
            minimum = format_0g(self.min_account_balance)
            raise NoLedgerError(
                f"Account does not exist: create the ledger first (at least {minimum} 0G)",
                hint=f"0g-broker add-account --amount {minimum}",
            )
        return ledger

    def _require_wallet_balance(self, value: int, what: str) -> None:
        """Refuse ``value`` neuron (to deposit) when the wallet holds less (gas comes on top);
        without this the node answers with an ``insufficient funds for gas * price + value``
        estimate error."""
        sender = self.ledger_contract.sender
        address = sender.address if sender is not None else self.user
        balance = int(self.ledger_contract.w3.eth.get_balance(address))
        if balance < value:
            raise self._wallet_error(address, balance, value, what)

    @staticmethod
    def _wallet_error(
        address: str, balance: int, value: int, what: str
    ) -> InsufficientWalletBalanceError:
        return InsufficientWalletBalanceError(
            f"the wallet {address} holds {format_0g(balance)} 0G, less than the "
            f"{format_0g(value)} 0G {what} plus gas",
            balance=balance,
            amount=value,
        )

    def _send_deposit(self, send, value: int, what: str) -> TxResult:
        """Send a payable deposit; the node's "insufficient funds for gas * price + value"
        (the wallet covers the amount but not the gas too) becomes
        :class:`InsufficientWalletBalanceError`, in 0G."""
        try:
            return self._result(send())
        except TransactionError as exc:
            if "insufficient funds" not in str(exc).lower():
                raise
            sender = self.ledger_contract.sender
            address = sender.address if sender is not None else self.user
            balance = int(self.ledger_contract.w3.eth.get_balance(address))
            raise self._wallet_error(address, balance, value, what) from None

    @staticmethod
    def _result(receipt) -> TxResult:
        return TxResult.from_receipt(receipt)

    # ------------------------------------------------------------------------- writes

    def add_ledger(self, balance: Amount, additional_info: str = "") -> TxResult:
        """Create the ledger with an initial deposit (``addLedger(additionalInfo)`` payable).

        Args:
            balance: 0G (``str``/``int``/``Decimal``) or :class:`~broker.units.Neuron`; at least
                :attr:`min_account_balance` (3 0G on mainnet).
            additional_info: free text stored on the ledger (≤ 4096 UTF-8 bytes).

        Returns:
            :class:`TxResult`.

        Raises:
            InvalidAmountError: malformed amount (float, negative, NaN, > 18 decimals).
            MinimumBalanceError: below :attr:`min_account_balance`.
            InputError: ``additional_info`` too long.
            LedgerAlreadyExistsError: the account already has a ledger.
            ContractRevertError, TransactionError, RPCError: from the chain.
        """
        value = to_neuron(balance)
        minimum = self.min_account_balance
        if value < minimum:
            raise MinimumBalanceError(
                f"Minimum balance to create a ledger is {format_0g(minimum)} 0G, but got "
                f"{format_0g(value)} 0G",
                hint=f"0g-broker add-account --amount {format_0g(minimum)}",
            )
        if len(additional_info.encode()) > MAX_ADDITIONAL_INFO_LENGTH:
            raise InputError(
                f"additional_info is {len(additional_info.encode())} bytes; the maximum is "
                f"{MAX_ADDITIONAL_INFO_LENGTH}"
            )
        if self._find_ledger() is not None:
            raise LedgerAlreadyExistsError(
                "Account already exists: deposit to add funds",
                hint="0g-broker deposit --amount N (or 0g-broker get-account to view it)",
            )
        what = "to create the ledger with"
        self._require_wallet_balance(value, what)
        return self._send_deposit(
            lambda: self.ledger_contract.add_ledger(additional_info, value), value, what
        )

    def deposit_fund(self, amount: Amount) -> TxResult:
        """Add funds to the ledger (``depositFund()`` payable); creates the ledger when absent.

        Args:
            amount: 0G or :class:`~broker.units.Neuron`, > 0; at least :attr:`min_account_balance`
                when no ledger exists yet.

        Returns:
            :class:`TxResult`.

        Raises:
            InvalidAmountError, MinimumBalanceError; chain errors.
        """
        value = to_neuron(amount)
        minimum = self.min_account_balance
        if value < minimum and self._find_ledger() is None:
            raise MinimumBalanceError(
                "No ledger exists yet. A deposit creates one, but the contract requires a "
                f"minimum of {format_0g(minimum)} 0G. Got {format_0g(value)} 0G",
                hint=f"0g-broker deposit --amount {format_0g(minimum)}",
            )
        self._require_wallet_balance(value, "to deposit")
        return self._send_deposit(
            lambda: self.ledger_contract.deposit_fund(value), value, "to deposit"
        )

    def deposit_fund_for(self, recipient: str, amount: Amount) -> TxResult:
        """Deposit into another account's ledger (``depositFundFor(recipient)`` payable).

        Args:
            recipient: address of the ledger owner.
            amount: 0G or :class:`~broker.units.Neuron`, > 0; at least :attr:`min_account_balance`
                when the recipient has no ledger (the contract creates one).

        Raises:
            InvalidAddressError, InvalidAmountError, MinimumBalanceError; chain errors.
        """
        recipient = checksum_address(recipient, field="recipient")
        value = to_neuron(amount)
        minimum = self.min_account_balance
        if value < minimum and self._find_ledger(recipient) is None:
            raise MinimumBalanceError(
                f"{recipient} has no ledger yet; creating one needs at least {format_0g(minimum)} "
                f"0G, got {format_0g(value)} 0G"
            )
        self._require_wallet_balance(value, "to deposit")
        return self._send_deposit(
            lambda: self.ledger_contract.deposit_fund_for(recipient, value), value, "to deposit"
        )

    def refund(self, amount: Amount) -> TxResult:
        """Withdraw from the ledger's available balance to the wallet (``refund(amount)``).

        The remaining available balance must be 0 or at least :attr:`min_account_balance` (contract
        rule; 3 0G on mainnet); withdrawing
        everything (total reaching 0) deletes the ledger and its sub-accounts.

        Args:
            amount: 0G or :class:`~broker.units.Neuron`, > 0.

        Raises:
            InvalidAmountError, NoLedgerError, InsufficientLedgerBalanceError,
            MinimumBalanceError; chain errors.
        """
        value = to_neuron(amount)
        ledger = self._require_ledger()
        if ledger.available_balance < value:
            raise InsufficientLedgerBalanceError(
                "Insufficient balance in the account: available "
                f"{format_0g(ledger.available_balance)} 0G, requested {format_0g(value)} 0G"
            )
        remaining = ledger.available_balance - value
        minimum = self.min_account_balance
        if 0 < remaining < minimum:
            raise MinimumBalanceError(
                f"refund would leave {format_0g(remaining)} 0G available; the remainder must be 0 "
                f"or at least {format_0g(minimum)} 0G"
            )
        return self._result(self.ledger_contract.refund(value))

    def transfer_fund(
        self,
        provider: str,
        service_type_or_name: str,
        amount: Amount,
        *,
        allow_unregistered: bool = False,
    ) -> TxResult:
        """Move funds from the ledger to a provider sub-account (``transferFund``, A2.6).

        **Units:** the SDK's ``transferFund`` takes *neuron* (bigint); here ``amount`` is **0G**
        (``"1.5"``, ``2``, ``Decimal``) unless wrapped in :class:`~broker.units.Neuron`.

        For an existing sub-account the contract first cancels pending refunds (up to ``amount``)
        and debits only the rest from the ledger; a new sub-account needs at least
        :attr:`min_transfer_amount` (1 0G on mainnet).

        Args:
            provider: provider address.
            service_type_or_name: ``"inference"`` or the full name (``"inference-v1.0"``).
            amount: 0G or :class:`~broker.units.Neuron`, > 0.
            allow_unregistered: transfer even when no service is registered at ``provider``
                (``serviceExists``); by default that is refused, since the funds would be locked
                where nobody serves them (usually a mistyped address).

        Raises:
            InvalidAddressError, InvalidAmountError, UnknownServiceError, NoLedgerError,
            ProviderNotRegisteredError, MinimumBalanceError, InsufficientLedgerBalanceError; chain
            errors.
        """
        provider = checksum_address(provider, field="provider")
        name = self.service_name(service_type_or_name)
        value = to_neuron(amount)
        ledger = self._require_ledger()
        if not allow_unregistered:
            self.require_registered(provider)
        if self.inference_contract.account_exists(self.user, provider):
            pending = self.inference_contract.get_pending_refund(self.user, provider)
            needed = value - min(value, pending)
        else:
            minimum = self.min_transfer_amount
            if value < minimum:
                raise MinimumBalanceError(
                    f"a new provider sub-account needs at least {format_0g(minimum)} 0G, got "
                    f"{format_0g(value)} 0G"
                )
            needed = value
        if ledger.available_balance < needed:
            raise InsufficientLedgerBalanceError(
                "Insufficient balance in the account: available "
                f"{format_0g(ledger.available_balance)} 0G, "
                f"the transfer needs {format_0g(needed)} 0G"
            )
        return self._result(self.ledger_contract.transfer_fund(provider, name, value))

    def require_registered(self, provider: str, *, hint: str | None = None) -> str:
        """Check that an inference service is registered at ``provider`` (``serviceExists``,
        InferenceServing A3.3).

        Args:
            provider: provider address.
            hint: the CLI hint of the error (default: list the providers; ``--force``).

        Returns:
            The checksummed address.

        Raises:
            InvalidAddressError: malformed address.
            ProviderNotRegisteredError: no service there.
            RPCError: the node is unreachable.
        """
        provider = checksum_address(provider, field="provider")
        if not self.inference_contract.service_exists(provider):
            raise ProviderNotRegisteredError(
                provider,
                hint=hint
                or "0g-broker list-providers shows the registered ones; --force transfers anyway",
            )
        return provider

    def retrieve_fund(
        self, service_type: str = "inference", providers: Sequence[str] | None = None
    ) -> list[TxResult]:
        """Request refunds from provider sub-accounts and collect matured ones
        (``retrieveFund(providers, serviceName)``), in batches of at most 20 providers.

        Funds requested now become available after the contract's ``lockTime``; a later call
        moves matured refunds back to the ledger's available balance.

        Args:
            service_type: ``"inference"`` or the full service name.
            providers: addresses; ``None`` means every provider of the ledger for that service.

        Returns:
            One :class:`TxResult` per batch (empty when there is no provider).

        Raises:
            InvalidAddressError, UnknownServiceError, NoLedgerError; chain errors.
        """
        name = self.service_name(service_type)
        if providers is not None:
            chosen = [checksum_address(p, field="provider") for p in providers]
        else:
            chosen = None
        self._require_ledger()
        if chosen is None:
            chosen = self.ledger_contract.get_ledger_providers(self.user, name)
        chosen = list(dict.fromkeys(chosen))
        results: list[TxResult] = []
        for start in range(0, len(chosen), MAX_PROVIDERS_PER_BATCH):
            batch = chosen[start : start + MAX_PROVIDERS_PER_BATCH]
            results.append(self._result(self.ledger_contract.retrieve_fund(batch, name)))
        return results

    def delete_ledger(self) -> TxResult:
        """Delete an empty ledger (``deleteLedger()``).

        Raises:
            NoLedgerError, LedgerNotEmptyError (total balance > 0: use :meth:`refund`); chain
            errors.
        """
        ledger = self._require_ledger()
        if ledger.total_balance != 0:
            raise LedgerNotEmptyError(
                f"the ledger still holds {format_0g(ledger.total_balance)} 0G; withdraw all funds "
                "first"
            )
        return self._result(self.ledger_contract.delete_ledger())

    # ------------------------------------------------------------------------- reads

    def get_ledger(self) -> LedgerDetail:
        """The account's ledger (``getLedger``), amounts in neuron.

        Raises:
            NoLedgerError: the account has no ledger.
        """
        ledger = self._require_ledger()
        return LedgerDetail(
            ledger.user, ledger.available_balance, ledger.total_balance, ledger.additional_info
        )

    def get_ledger_providers(self, service_type: str = "inference") -> list[str]:
        """Providers with a sub-account for that service (``getLedgerProviders``)."""
        return self.ledger_contract.get_ledger_providers(self.user, self.service_name(service_type))

    def _sub_accounts(self, providers: Iterable[str], service_type: str) -> list[SubAccountBalance]:
        providers = list(providers)

        def one(p: str) -> SubAccountBalance | None:
            try:
                acc = self.inference_contract.get_account(self.user, p)
            except error_class("AccountNotExists"):
                return None
            return SubAccountBalance(p, acc.balance, acc.pending_refund, service_type)

        if len(providers) <= 1:
            found = [one(p) for p in providers]
        else:
            with ThreadPoolExecutor(max_workers=min(8, len(providers))) as pool:
                found = list(pool.map(one, providers))
        return [x for x in found if x is not None]

    def get_ledger_with_detail(self) -> LedgerOverview:
        """Ledger totals and every inference sub-account's balance and pending refund
        (the SDK's ``getLedgerWithDetail``).

        Raises:
            NoLedgerError; chain errors.
        """
        ledger = self.get_ledger()
        providers = self.get_ledger_providers("inference")
        return LedgerOverview(ledger, self._sub_accounts(providers, "inference"))

    def get_providers_with_balance(
        self, service_type: str = "inference"
    ) -> list[SubAccountBalance]:
        """Sub-accounts with ``balance > 0`` or ``pending_refund > 0``."""
        providers = self.get_ledger_providers(service_type)
        return [
            s
            for s in self._sub_accounts(providers, service_type)
            if s.balance > 0 or s.pending_refund > 0
        ]

    def get_sub_account_with_detail(
        self, provider: str, service_type: str = "inference"
    ) -> SubAccountDetail:
        """One sub-account with its pending refunds and their remaining lock time (seconds, never
        negative; measured against the latest block's timestamp).

        Raises:
            InvalidAddressError, UnknownServiceError, ``AccountNotExistsError`` (no sub-account);
            chain errors.
        """
        provider = checksum_address(provider, field="provider")
        self.service_name(service_type)
        acc = self.inference_contract.get_account(self.user, provider)
        lock_time = self.inference_contract.lock_time()
        try:
            now = int(self.inference_contract.w3.eth.get_block("latest")["timestamp"])
        except Exception:  # noqa: BLE001 - fall back to the local clock
            now = int(time.time())
        refunds = [
            RefundDetail(r.index, r.amount, r.created_at, max(0, r.created_at + lock_time - now))
            for r in acc.active_refunds
        ]
        return SubAccountDetail(
            service_type,
            acc.user,
            acc.provider,
            acc.balance,
            acc.pending_refund,
            lock_time,
            refunds,
            acc.acknowledged,
            acc.generation,
        )
