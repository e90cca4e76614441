"""Sub-accounts and TEE-signer acknowledgement for the inference broker (user-broker.md §5.2, §5.3;
§13 items 7, 8).

:class:`SubAccounts` reads ``getAccount`` / ``getAccountsByUser`` (keeping the account-info cache of
:class:`~broker.inference.state.BrokerState`: generation and revoked bitmap, 5 minutes), creates a
missing sub-account with 1 0G when asked, and sends ``acknowledgeTEESigner`` (user) and
``acknowledgeTEESignerByOwner`` / ``revokeTEESignerAcknowledgement`` (contract owner), keeping the
acknowledgement cache (positive answers, 10 minutes). Addresses passed in are already checksummed by
the facade (:class:`~broker.inference.broker.InferenceBroker`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from broker.chain.contracts import InferenceServingContract
from broker.chain.errors import error_class
from broker.inference.errors import AccountNotFoundError, RevokeAcknowledgementError
from broker.inference.models import Account, AccountDetail, SignerStatus
from broker.inference.services import PAGE_LIMIT, ServiceDirectory
from broker.inference.state import BrokerState
from broker.ledger.models import TxResult
from broker.units import Neuron

if TYPE_CHECKING:
    from broker.ledger.broker import LedgerBroker

__all__ = [
    "ACCOUNT_INFO_TTL_S",
    "ACK_CACHE_TTL_S",
    "SUB_ACCOUNT_CREATION_AMOUNT",
    "AcknowledgeResult",
    "SubAccounts",
]

logger = logging.getLogger(__name__)

ACK_CACHE_TTL_S = 600.0
ACCOUNT_INFO_TTL_S = 300.0
SUB_ACCOUNT_CREATION_AMOUNT = 10**18  # neuron (1 0G, MIN_TRANSFER_AMOUNT)


@dataclass(frozen=True, slots=True)
class AcknowledgeResult:
    """What :meth:`InferenceBroker.acknowledge_provider_signer` did.

    Attributes:
        provider: checksummed provider address.
        sub_account_created: a sub-account was created first by transferring ``transferred``.
        transferred: neuron moved from the ledger to create the sub-account (0 if none).
        already_acknowledged: nothing to do; no acknowledgement transaction was sent.
        tx: the ``acknowledgeTEESigner`` transaction, if one was sent.
    """

    provider: str
    sub_account_created: bool
    transferred: int
    already_acknowledged: bool
    tx: TxResult | None


class SubAccounts:
    """The user's sub-accounts and acknowledgements (§5.2, §5.3).

    Args:
        contract: the InferenceServing wrapper (reads and writes, sent from the user's account).
        address: the user's checksummed address.
        ledger: the account's ledger broker (``transferFund`` creates a sub-account).
        services: the broker's :class:`~broker.inference.services.ServiceDirectory` (signer status,
            cache invalidation after owner-level changes).
        state: the broker's shared :class:`~broker.inference.state.BrokerState` (``account_info``
            and ``acks`` caches, lock, clock).
    """

    def __init__(
        self,
        contract: InferenceServingContract,
        address: str,
        ledger: LedgerBroker,
        services: ServiceDirectory,
        state: BrokerState,
    ) -> None:
        self._contract = contract
        self._address = address
        self._ledger = ledger
        self._services = services
        self._state = state

    # ------------------------------------------------------------------------- accounts (§5.2)

    def read(self, provider: str) -> Account | None:
        """``getAccount(user, provider)`` (``None`` when it does not exist); refreshes the
        account-info cache."""
        try:
            account = self._contract.get_account(self._address, provider)
        except error_class("AccountNotExists"):
            return None
        with self._state.lock:
            self._state.account_info[provider] = (
                account.generation,
                account.revoked_bitmap,
                self._state.clock() + ACCOUNT_INFO_TTL_S,
            )
        return account

    def get(self, provider: str) -> Account:
        """The sub-account. Raises AccountNotFoundError when there is none."""
        account = self.read(provider)
        if account is None:
            raise AccountNotFoundError(
                f"no sub-account for provider {provider}; transfer funds to it first "
                "(ledger.transfer_fund)"
            )
        return account

    def detail(self, provider: str) -> AccountDetail:
        """The sub-account with its refunds' ``remain_time`` (seconds, never below 0)."""
        account = self.get(provider)
        lock_time = self._contract.lock_time()
        return AccountDetail.build(account, lock_time, int(self._state.clock()))

    def list_all(self, page_limit: int = PAGE_LIMIT) -> list[Account]:
        """All pages of ``getAccountsByUser(user, offset, page_limit)``."""
        accounts: list[Account] = []
        offset = 0
        while True:
            page, total = self._contract.get_accounts_by_user(self._address, offset, page_limit)
            accounts.extend(page)
            offset += len(page)
            if not page or offset >= total:
                break
        return accounts

    def info_cached(self, provider: str) -> tuple[int, int]:
        """(generation, revoked_bitmap), cached 5 min; (0, 0) when no account exists."""
        with self._state.lock:
            entry = self._state.account_info.get(provider)
        if entry is not None and entry[2] > self._state.clock():
            return entry[0], entry[1]
        account = self.read(provider)
        return (0, 0) if account is None else (account.generation, account.revoked_bitmap)

    def forget_info(self, provider: str) -> None:
        """Drop the cached account info of ``provider`` (after a token revocation)."""
        with self._state.lock:
            self._state.account_info.pop(provider, None)

    # ----------------------------------------------------------------------- acknowledgement (§5.3)

    def ensure(self, provider: str, create: bool) -> tuple[Account, bool]:
        """(account, created): read the sub-account, creating it with 1 0G from the ledger when it
        is missing and ``create`` (logged). Raises AccountNotFoundError when missing and not
        ``create``."""
        account = self.read(provider)
        if account is not None:
            return account, False
        if not create:
            raise AccountNotFoundError(
                f"no sub-account for provider {provider} (create_sub_account=False)"
            )
        logger.warning(
            "creating the sub-account for provider %s: transferring 1 0G from the ledger", provider
        )
        self._ledger.transfer_fund(provider, "inference", Neuron(SUB_ACCOUNT_CREATION_AMOUNT))
        account = self.read(provider)
        if account is None:  # pragma: no cover - the transfer creates it
            raise AccountNotFoundError(f"sub-account for {provider} missing after transferFund")
        return account, True

    def _remember_ack(self, provider: str) -> None:
        with self._state.lock:
            self._state.acks[provider] = self._state.clock() + ACK_CACHE_TTL_S

    def acknowledge(self, provider: str, create_sub_account: bool) -> AcknowledgeResult:
        """``acknowledgeTEESigner(provider, true)`` unless already acknowledged."""
        account, created = self.ensure(provider, create_sub_account)
        transferred = SUB_ACCOUNT_CREATION_AMOUNT if created else 0
        if account.acknowledged:
            self._remember_ack(provider)
            return AcknowledgeResult(provider, created, transferred, True, None)
        receipt = self._contract.acknowledge_tee_signer(provider, True)
        self._remember_ack(provider)
        return AcknowledgeResult(
            provider, created, transferred, False, TxResult.from_receipt(receipt)
        )

    def acknowledged(self, provider: str) -> bool:
        """Whether the user acknowledged the signer (positive answers cached 10 min). Raises
        AccountNotFoundError when there is no sub-account."""
        with self._state.lock:
            expiry = self._state.acks.get(provider)
        if expiry is not None and expiry > self._state.clock():
            return True
        account = self.get(provider)
        if account.acknowledged:
            self._remember_ack(provider)
        return account.acknowledged

    def signer_status(self, provider: str, create_sub_account: bool) -> SignerStatus:
        """Owner-level acknowledgement of the provider's TEE signer (fresh ``getService``)."""
        created = False
        if create_sub_account:
            _, created = self.ensure(provider, True)
        service = self._services.get(provider, refresh=True)
        signer = service.tee_signer_address
        zero = not signer or int(signer, 16) == 0
        if service.tee_signer_acknowledged and not zero:
            return SignerStatus(True, signer, created)
        return SignerStatus(False, "" if zero else signer, created)

    def revoke_acknowledgement(self, provider: str) -> TxResult:
        """``acknowledgeTEESigner(provider, false)``; refused while the balance is not zero."""
        account = self.get(provider)
        if account.balance > 0:
            raise RevokeAcknowledgementError(
                "Cannot revoke acknowledgement when account balance is not zero."
            )
        receipt = self._contract.acknowledge_tee_signer(provider, False)
        with self._state.lock:
            self._state.acks.pop(provider, None)
        return TxResult.from_receipt(receipt)

    def owner_acknowledge(self, provider: str) -> TxResult:
        """Contract owner: ``acknowledgeTEESignerByOwner(provider)``; drops the cached service."""
        receipt = self._contract.acknowledge_tee_signer_by_owner(provider)
        self._services.forget(provider)
        return TxResult.from_receipt(receipt)

    def owner_revoke(self, provider: str) -> TxResult:
        """Contract owner: ``revokeTEESignerAcknowledgement(provider)``; drops the cached
        service."""
        receipt = self._contract.revoke_tee_signer_acknowledgement(provider)
        self._services.forget(provider)
        return TxResult.from_receipt(receipt)
