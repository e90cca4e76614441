"""The pure funding decision of the check-and-fund cycle (user-broker.md §7.3 steps 3–5).

``required = unsettled_fee + buffer_multiplier × 1 0G``; ``deficit = required − locked`` (or all of
``required`` when the sub-account does not exist); when ``deficit > 0`` transfer
``max(deficit, 1 0G)``. Every amount is an int in neuron; the multiplier is converted exactly with
:func:`broker.units.parse_0g` (floats refused).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from broker._exceptions import InvalidAmountError
from broker.funding.errors import FundingConfigError
from broker.units import parse_0g

__all__ = [
    "DEFAULT_BUFFER_MULTIPLIER",
    "MIN_LOCKED_BALANCE",
    "MIN_TRANSFER_AMOUNT",
    "BufferMultiplier",
    "FundingDecision",
    "buffer_amount",
    "decide",
]

#: ``MIN_LOCKED_BALANCE`` of the SDK: 1 0G in neuron (the unit of the buffer).
MIN_LOCKED_BALANCE = 10**18
#: the smallest transfer the cycle sends: 1 0G in neuron.
MIN_TRANSFER_AMOUNT = 10**18
#: the SDK's default ``bufferMultiplier``.
DEFAULT_BUFFER_MULTIPLIER = 2

BufferMultiplier = int | Decimal | str


def buffer_amount(buffer_multiplier: BufferMultiplier) -> int:
    """``buffer_multiplier × 1 0G`` in neuron, exactly.

    Args:
        buffer_multiplier: a non-negative int, ``Decimal`` or decimal string (``2``, ``"1.5"``).

    Returns:
        neuron (int).

    Raises:
        FundingConfigError: a float, bool, negative or unparsable value, or finer than 1 neuron.
    """
    try:
        return parse_0g(buffer_multiplier, allow_zero=True)
    except InvalidAmountError as exc:
        raise FundingConfigError(f"invalid buffer multiplier: {exc}") from None


@dataclass(frozen=True, slots=True)
class FundingDecision:
    """Outcome of :func:`decide` (all neuron).

    Attributes:
        unsettled_fee: the provider's unsettled fee used.
        locked_balance: ``balance − pendingRefund`` of the sub-account, ``None`` if it does not
            exist.
        required: ``unsettled_fee + buffer``.
        deficit: ``max(0, required − locked)`` (``required`` when there is no sub-account).
        amount: the transfer to make: ``max(deficit, 1 0G)``, or 0 when funded.
    """

    unsettled_fee: int
    locked_balance: int | None
    required: int
    deficit: int
    amount: int

    @property
    def needs_transfer(self) -> bool:
        """True when :attr:`amount` > 0."""
        return self.amount > 0


def decide(
    locked_balance: int | None,
    unsettled_fee: int,
    buffer_multiplier: BufferMultiplier = DEFAULT_BUFFER_MULTIPLIER,
) -> FundingDecision:
    """Decide whether (and how much) to transfer to a sub-account.

    Args:
        locked_balance: neuron locked in the sub-account (``balance − pendingRefund``), or ``None``
            when the sub-account does not exist.
        unsettled_fee: neuron the provider has billed but not settled (``≥ 0``).
        buffer_multiplier: how many 0G to keep above the unsettled fee (default 2).

    Returns:
        :class:`FundingDecision`.

    Raises:
        FundingConfigError: bad multiplier, or a negative / non-int amount.
    """
    for name, value in (("unsettled_fee", unsettled_fee), ("locked_balance", locked_balance)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise FundingConfigError(f"{name} must be an int in neuron, got {value!r}")
    if unsettled_fee < 0:
        raise FundingConfigError(f"unsettled_fee must not be negative, got {unsettled_fee}")
    required = unsettled_fee + buffer_amount(buffer_multiplier)
    deficit = required if locked_balance is None else max(0, required - locked_balance)
    amount = max(deficit, MIN_TRANSFER_AMOUNT) if deficit > 0 else 0
    return FundingDecision(unsettled_fee, locked_balance, required, deficit, amount)
