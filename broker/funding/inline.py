"""The per-request funding strategy (user-broker.md §7.3 / §5.4 step 1), with the fixes of §13
item 1: single-flight per provider and rate-limited.

:class:`InlineFunding` is the default :class:`~broker.inference.broker.FundingStrategy` of
:class:`~broker.inference.broker.InferenceBroker`: before each request header it runs one
check-and-fund cycle, unless a background job runs for that provider or a cycle completed less than
``min_interval_s`` seconds ago. Unlike the SDK it does not create a missing sub-account (that costs
money and the request would fail anyway without an acknowledgement; §13 item 7).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from broker.funding.policy import DEFAULT_BUFFER_MULTIPLIER, BufferMultiplier, buffer_amount

if TYPE_CHECKING:
    from broker.funding.source import FundingSource

__all__ = ["DEFAULT_MIN_INTERVAL_S", "InlineFunding"]

logger = logging.getLogger(__name__)

#: seconds during which the result of the last cycle is reused by inline checks.
DEFAULT_MIN_INTERVAL_S = 5.0


class InlineFunding:
    """Run a check-and-fund cycle before a request when no background job covers the provider.

    Args:
        buffer_multiplier: 0G kept above the unsettled fee (default 2, like the SDK).
        min_interval_s: skip the check when the last cycle for this provider is younger (seconds).
        create_sub_account: also create a missing sub-account (the SDK does; default ``False``).

    Raises:
        FundingConfigError: bad buffer multiplier or negative ``min_interval_s``.
    """

    def __init__(
        self,
        buffer_multiplier: BufferMultiplier = DEFAULT_BUFFER_MULTIPLIER,
        *,
        min_interval_s: float = DEFAULT_MIN_INTERVAL_S,
        create_sub_account: bool = False,
    ) -> None:
        from broker.funding.errors import FundingConfigError

        buffer_amount(buffer_multiplier)
        if min_interval_s < 0:
            raise FundingConfigError("min_interval_s must not be negative")
        self.buffer_multiplier = buffer_multiplier
        self.min_interval_s = float(min_interval_s)
        self.create_sub_account = create_sub_account

    def __repr__(self) -> str:
        return (
            f"InlineFunding(buffer_multiplier={self.buffer_multiplier!r}, "
            f"min_interval_s={self.min_interval_s})"
        )

    def before_request(self, broker: FundingSource, provider: str) -> None:
        """The :class:`~broker.inference.broker.FundingStrategy` hook; never raises."""
        checker = broker.funding_checker
        if checker.is_running(provider):
            return
        try:
            checker.check_if_stale(
                provider, self.min_interval_s, self.buffer_multiplier,
                create_sub_account=self.create_sub_account,
            )  # fmt: skip
        except Exception:  # pragma: no cover - check() itself never raises for funding failures
            logger.exception("inline auto-funding for %s failed", provider)
