"""Auto-funding of inference sub-accounts (user-broker.md §7.3–§7.4, §13 items 1–2).

Modules: ``policy`` (the pure decision), ``protocol`` / ``unsettled`` (the provider's
``/unsettledfee``), ``status`` (``FundingStatus``, ``FundingEvent``), ``checker`` (the single-flight
check-and-fund cycle), ``scheduler`` (APScheduler jobs), ``inline`` (the per-request strategy),
``errors``. The usual entry points are the :class:`~broker.inference.broker.InferenceBroker`
methods ``start_auto_funding`` / ``stop_auto_funding`` / ``auto_funding_status`` /
``add_funding_listener``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from broker._lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover - names for type checkers; loaded on first use
    from broker.funding.checker import FundingChecker, FundingListener, RetryPolicy
    from broker.funding.errors import (
        FundingClosedError,
        FundingConfigError,
        FundingError,
        UnsettledFeeError,
    )
    from broker.funding.inline import DEFAULT_MIN_INTERVAL_S, InlineFunding
    from broker.funding.policy import (
        DEFAULT_BUFFER_MULTIPLIER,
        MIN_LOCKED_BALANCE,
        MIN_TRANSFER_AMOUNT,
        FundingDecision,
        buffer_amount,
        decide,
    )
    from broker.funding.scheduler import DEFAULT_INTERVAL_S, FundingScheduler
    from broker.funding.status import FundingEvent, FundingStatus
    from broker.funding.unsettled import fetch_unsettled_fee, unsettled_fee_url

__all__ = [
    "DEFAULT_BUFFER_MULTIPLIER",
    "DEFAULT_INTERVAL_S",
    "DEFAULT_MIN_INTERVAL_S",
    "MIN_LOCKED_BALANCE",
    "MIN_TRANSFER_AMOUNT",
    "FundingChecker",
    "FundingClosedError",
    "FundingConfigError",
    "FundingDecision",
    "FundingError",
    "FundingEvent",
    "FundingListener",
    "FundingScheduler",
    "FundingStatus",
    "InlineFunding",
    "RetryPolicy",
    "UnsettledFeeError",
    "buffer_amount",
    "decide",
    "fetch_unsettled_fee",
    "unsettled_fee_url",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "FundingChecker": "checker",
        "FundingListener": "checker",
        "RetryPolicy": "checker",
        "FundingClosedError": "errors",
        "FundingConfigError": "errors",
        "FundingError": "errors",
        "UnsettledFeeError": "errors",
        "DEFAULT_MIN_INTERVAL_S": "inline",
        "InlineFunding": "inline",
        "DEFAULT_BUFFER_MULTIPLIER": "policy",
        "MIN_LOCKED_BALANCE": "policy",
        "MIN_TRANSFER_AMOUNT": "policy",
        "FundingDecision": "policy",
        "buffer_amount": "policy",
        "decide": "policy",
        "DEFAULT_INTERVAL_S": "scheduler",
        "FundingScheduler": "scheduler",
        "FundingEvent": "status",
        "FundingStatus": "status",
        "fetch_unsettled_fee": "unsettled",
        "unsettled_fee_url": "unsettled",
    },
)
