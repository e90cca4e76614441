"""Errors of the auto-funding area (``broker.funding``).

Tree::

    InferenceError
    └── FundingError                  base of this area
        ├── UnsettledFeeError         ``GET {url}/v1/user/{address}/unsettledfee`` failed or had the
        │                             wrong shape (provider-gateway.md B2)
        └── FundingConfigError (also InputError)  a bad interval / buffer multiplier / retry policy

Funding *cycles* never raise: failures are recorded in :class:`~broker.funding.status.FundingStatus`
(``last_error``) and reported as ``error`` events. These classes reach the caller only from the
explicit helpers (:func:`~broker.funding.unsettled.fetch_unsettled_fee`, argument validation).
"""

from __future__ import annotations

from broker._exceptions import InferenceError, InputError

__all__ = ["FundingConfigError", "FundingError", "UnsettledFeeError"]


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
