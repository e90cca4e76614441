"""The narrow interface auto-funding needs from the user's inference broker.

:mod:`broker.funding` depends on this protocol, not on
:class:`~broker.inference.broker.InferenceBroker` (which satisfies it), so that ``inference`` ->
``funding`` is the only direction of import between the two packages.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

if TYPE_CHECKING:
    from broker.funding.checker import FundingChecker

__all__ = ["FeeCache", "FundingSource", "SubAccountLedger"]


class FeeCache(Protocol):
    """The cached unsettled fee per (user, provider), in neuron."""

    def get_cached_fee(self, user: str, provider: str) -> int:
        """The last known unsettled fee (0 when none)."""

    def set_cached_fee(self, user: str, provider: str, fee: int) -> None:
        """Remember ``fee`` (neuron)."""


class SubAccountLedger(Protocol):
    """The ledger write funding uses (LedgerManager ``transferFund``)."""

    def transfer_fund(self, provider: str, service_type: str, amount: Any) -> Any:
        """Move ``amount`` (a :class:`~broker.units.Neuron` or 0G amount) to the sub-account."""


class FundingSource(Protocol):
    """What a :class:`~broker.funding.checker.FundingChecker` reads and calls.

    Attributes:
        address: the user's checksummed address.
        fee_store: a :class:`FeeCache`. ledger: a :class:`SubAccountLedger`.
        funding_checker: the shared checker (used by :class:`~broker.funding.inline.InlineFunding`).
        missing_account_errors: what :meth:`get_account` / :meth:`session_headers` raise when the
            provider sub-account does not exist yet.
        no_session_errors: what :meth:`session_headers` raises when no session token can be made
            (no sub-account, TEE signer not acknowledged); funding then uses the cached fee.
    """

    address: str
    fee_store: FeeCache
    ledger: SubAccountLedger
    missing_account_errors: ClassVar[tuple[type[Exception], ...]]
    no_session_errors: ClassVar[tuple[type[Exception], ...]]

    @property
    def funding_checker(self) -> FundingChecker:
        """The broker's shared :class:`~broker.funding.checker.FundingChecker`."""

    def session_headers(self, provider: str) -> Mapping[str, str]:
        """Request headers with a session token for ``provider`` (for ``/unsettledfee``)."""

    def get_service(self, provider: str) -> Any:
        """The provider's service record (its ``url`` is used)."""

    def get_account(self, provider: str) -> Any:
        """The sub-account (``balance`` and ``pending_refund``, neuron)."""
