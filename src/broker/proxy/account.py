"""``GET /v1/account``: ledger, sub-account, fees, auto-funding state and recent verification
results as one JSON document (:class:`~broker.proxy.protocol.AccountResponse`); the balance gauges
of the metrics are refreshed from the same reads."""

from __future__ import annotations

from typing import TYPE_CHECKING

from broker.inference.errors import AccountNotFoundError
from broker.ledger.errors import NoLedgerError
from broker.proxy.protocol import (
    AccountResponse,
    FeeInfo,
    FundingInfo,
    LedgerInfo,
    SubAccountInfo,
    VerificationInfo,
)

if TYPE_CHECKING:
    from broker.proxy.context import ProxyContext

__all__ = ["account_snapshot"]


def account_snapshot(ctx: ProxyContext) -> AccountResponse:
    """Read everything (blocking: chain reads and SQLite) and update the balance gauges.

    Returns:
        :class:`AccountResponse`; amounts are neuron as decimal strings.

    Raises:
        RPCError: the node is unreachable.
    """
    inference, provider, gauge = ctx.inference, ctx.provider, ctx.metrics.balance
    ledger = None
    if ctx.broker is not None and getattr(ctx.broker, "ledger", None) is not None:
        try:
            detail = ctx.broker.ledger.get_ledger()
        except NoLedgerError:
            detail = None
        if detail is not None:
            ledger = LedgerInfo(total_balance=str(detail.total_balance),
                                available_balance=str(detail.available_balance),
                                locked_balance=str(detail.locked_balance))
            gauge.labels(account="ledger_total").set(detail.total_balance)
            gauge.labels(account="ledger_available").set(detail.available_balance)
    try:
        acc = inference.get_account(provider)
    except AccountNotFoundError:
        sub = None
    else:
        locked = acc.balance - acc.pending_refund
        sub = SubAccountInfo(balance=str(acc.balance), pending_refund=str(acc.pending_refund),
                             locked_balance=str(locked), acknowledged=acc.acknowledged,
                             generation=acc.generation)
        gauge.labels(account="sub_account").set(acc.balance)
        gauge.labels(account="sub_account_locked").set(locked)
    totals = inference.fee_store.get_totals(inference.address, provider)
    gauge.labels(account="unsettled_fee").set(totals.cached_fee)
    funding = FundingInfo(enabled=False)
    if hasattr(inference, "auto_funding_status"):
        status = inference.auto_funding_status(provider)
        data = status.model_dump(mode="json") if hasattr(status, "model_dump") else dict(status)
        funding = FundingInfo(enabled=bool(data.get("running")), status=data)
    recent = [
        VerificationInfo(chat_id=r.chat_id, verified=r.verified, reason=r.reason.value,
                         signer=r.signer, detail=r.detail, at=r.created_at)
        for r in inference.fee_store.recent_verifications(ctx.settings.recent_verifications,
                                                          provider=provider,
                                                          user=inference.address)
    ] if ctx.settings.recent_verifications else []
    return AccountResponse(
        user=inference.address, provider=provider, ledger=ledger, sub_account=sub,
        fees=FeeInfo(unsettled_fee=str(totals.cached_fee), total_fee=str(totals.total_fee),
                     request_count=totals.request_count),
        auto_funding=funding, recent_verifications=recent)
