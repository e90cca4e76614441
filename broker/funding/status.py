"""Dashboard-readable state of auto-funding: :class:`FundingStatus` (one per provider) and the
:class:`FundingEvent` stream given to listeners. Amounts are ints in neuron; times are UTC."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["FundingEvent", "FundingEventKind", "FundingStatus"]

FundingEventKind = Literal["check", "transfer", "error"]


class FundingStatus(BaseModel):
    """Auto-funding state of one provider sub-account.

    Attributes:
        provider: checksummed provider address.
        running: a background job runs for this provider.
        interval: seconds between background checks (``None`` when no job runs).
        buffer_multiplier: 0G kept above the unsettled fee (as given, decimal string).
        last_check_at: end of the last completed check (``None`` before the first).
        last_transfer_at / last_transfer_amount: the last top-up (neuron; 0 before the first).
        transfers / checks: counts since this broker started.
        last_error: text of the last failure (cleared by the next fully successful check).
        unsettled_fee: neuron used by the last check (``None`` before the first).
        unsettled_fee_source: ``"provider"`` (``/unsettledfee``) or ``"cached"`` (the local fee
            store, when the provider could not be asked).
        locked_balance: neuron locked in the sub-account at the last check (after any top-up);
            ``None`` when no sub-account exists or before the first check.
    """

    model_config = ConfigDict(frozen=True)

    provider: str
    running: bool = False
    interval: float | None = None
    buffer_multiplier: str = "2"
    last_check_at: datetime | None = None
    last_transfer_at: datetime | None = None
    last_transfer_amount: int = 0
    transfers: int = 0
    checks: int = 0
    last_error: str | None = None
    unsettled_fee: int | None = None
    unsettled_fee_source: Literal["provider", "cached"] | None = None
    locked_balance: int | None = None


class FundingEvent(BaseModel):
    """One auto-funding decision, given to every listener.

    Attributes:
        kind: ``"check"`` (a check found the sub-account funded, or is about to top it up),
            ``"transfer"`` (a top-up landed), ``"error"`` (an HTTP, RPC or transaction failure).
        provider: checksummed provider address.
        amount: neuron: the transfer amount (``transfer``, and the planned amount on ``check``),
            else 0.
        at: when (UTC).
        detail: a human-readable line (never contains secrets).
    """

    model_config = ConfigDict(frozen=True)

    kind: FundingEventKind
    provider: str
    amount: int = 0
    at: datetime
    detail: str = ""
