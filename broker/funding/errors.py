"""Errors of the auto-funding area (``broker.funding``).

Tree::

    InferenceError
    └── FundingError                  base of this area
        ├── UnsettledFeeError         ``GET {url}/v1/user/{address}/unsettledfee`` failed or had the
        │                             wrong shape (provider-gateway.md B2)
        ├── FundingClosedError        auto-funding of a closed broker was asked to start
        └── FundingConfigError (also InputError)  a bad interval / buffer multiplier / retry policy

Funding *cycles* never raise: failures are recorded in :class:`~broker.funding.status.FundingStatus`
(``last_error``) and reported as ``error`` events. These classes reach the caller only from the
explicit helpers (:func:`~broker.funding.unsettled.fetch_unsettled_fee`, argument validation).
"""

from __future__ import annotations

from broker._exceptions import InferenceError, InputError

__all__ = ["FundingClosedError", "FundingConfigError", "FundingError", "UnsettledFeeError"]


class FundingError(InferenceError):
    """Base class of auto-funding errors."""


class UnsettledFeeError(FundingError):
    """The provider's ``/unsettledfee`` endpoint failed (network, non-2xx, non-JSON, bad shape).

    Attributes:
        status_code: the HTTP status, or ``None`` when no response arrived.
    """

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code


class FundingConfigError(FundingError, InputError):
    """An invalid auto-funding argument (interval, buffer multiplier, retry policy)."""


class FundingClosedError(FundingError):
    """Auto-funding was closed (:meth:`~broker.funding.checker.FundingChecker.close`, called by
    :meth:`~broker.inference.broker.InferenceBroker.close`): no job can be started any more.

    Raised by :meth:`~broker.funding.scheduler.FundingScheduler.start` (and so by
    ``InferenceBroker.start_auto_funding``), also when the broker is closed while the first cycle
    of a start is running. Inside a cycle it only marks the point where a closed checker stops; it
    never leaves :meth:`~broker.funding.checker.FundingChecker.check`.
    """
