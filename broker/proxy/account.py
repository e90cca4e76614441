"""``GET /v1/account``: ledger, sub-account, fees, auto-funding state and recent verification
results as one JSON document (:class:`~broker.proxy.protocol.AccountResponse`); the balance gauges
of the metrics are refreshed from the same reads."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from broker.inference.errors import AccountNotFoundError
from broker.ledger.errors import NoLedgerError
from broker.proxy.chain_reads import ChainReads
from broker.proxy.protocol import (
    AccountResponse,
    ChainInfo,
    FeeInfo,
    FundingInfo,
    LedgerInfo,
    SubAccountInfo,
    VerificationInfo,
)

if TYPE_CHECKING:
    from broker.chain.contracts import Account
    from broker.ledger.models import LedgerDetail
    from broker.proxy.context import ProxyContext

__all__ = ["DEFAULT_CHAIN_TIMEOUT", "account_snapshot"]

logger = logging.getLogger(__name__)

#: Seconds the chain reads of one ``/v1/account`` or ``/metrics`` answer may take in all.
DEFAULT_CHAIN_TIMEOUT = 3.0


def _read_ledger(ctx: ProxyContext) -> LedgerDetail | None:
    try:
        return ctx.broker.ledger.get_ledger()
    except NoLedgerError:
        return None


def _read_sub_account(ctx: ProxyContext) -> Account | None:
    try:
        return ctx.inference.get_account(ctx.provider)
    except AccountNotFoundError:
        return None


def account_snapshot(ctx: ProxyContext) -> AccountResponse:
    """Read everything (blocking: chain reads and SQLite) and update the balance gauges.

    The chain reads (ledger, sub-account) run with a deadline of ``settings.chain_timeout``
    seconds (default 3) in all; a part that did not answer in time, or whose read failed, is
    ``null`` and named in ``chain.unavailable`` with ``chain.ok = false`` and the reason in
    ``chain.error``; its gauges keep their last values. The local parts (fees, auto-funding,
    verification results) are always filled: the answer is partial, never late.

    Returns:
        :class:`AccountResponse`; amounts are neuron as decimal strings.
    """
    inference, provider, gauge = ctx.inference, ctx.provider, ctx.metrics.balance
    reads: dict[str, Callable[[], Any]] = {"sub_account": lambda: _read_sub_account(ctx)}
    if ctx.broker is not None and getattr(ctx.broker, "ledger", None) is not None:
        reads["ledger"] = lambda: _read_ledger(ctx)
    reader = ctx.extra.setdefault("chain_reads", ChainReads())
    timeout = float(getattr(ctx.settings, "chain_timeout", DEFAULT_CHAIN_TIMEOUT))
    results = reader.run(reads, timeout)
    down = [name for name, r in results.items() if not r.ok]
    chain = ChainInfo(
        ok=not down,
        unavailable=down,
        error="; ".join(f"{name}: {results[name].error}" for name in down) or None,
    )
    if down:
        logger.warning("chain reads unavailable: %s", chain.error)
    ledger = None
    detail = results["ledger"].value if "ledger" in results else None
    if detail is not None:
        ledger = LedgerInfo(
            total_balance=str(detail.total_balance),
            available_balance=str(detail.available_balance),
            locked_balance=str(detail.locked_balance),
        )
        gauge.labels(account="ledger_total").set(detail.total_balance)
        gauge.labels(account="ledger_available").set(detail.available_balance)
    sub = None
    acc = results["sub_account"].value
    if acc is not None:
        locked = acc.balance - acc.pending_refund
        sub = SubAccountInfo(
            balance=str(acc.balance),
            pending_refund=str(acc.pending_refund),
            locked_balance=str(locked),
            acknowledged=acc.acknowledged,
            generation=acc.generation,
        )
        gauge.labels(account="sub_account").set(acc.balance)
        gauge.labels(account="sub_account_locked").set(locked)
    totals = inference.fee_store.get_totals(inference.address, provider)
    gauge.labels(account="unsettled_fee").set(totals.cached_fee)
    funding = FundingInfo(enabled=False)
    if hasattr(inference, "auto_funding_status"):
        status = inference.auto_funding_status(provider)
        data = status.model_dump(mode="json") if hasattr(status, "model_dump") else dict(status)
        funding = FundingInfo(enabled=bool(data.get("running")), status=data)
    recent = (
        [
            VerificationInfo(
                chat_id=r.chat_id,
                verified=r.verified,
                reason=r.reason.value,
                signer=r.signer,
                detail=r.detail,
                at=r.created_at,
            )
            for r in inference.fee_store.recent_verifications(
                ctx.settings.recent_verifications, provider=provider, user=inference.address
            )
        ]
        if ctx.settings.recent_verifications
        else []
    )
    return AccountResponse(
        user=inference.address,
        provider=provider,
        ledger=ledger,
        sub_account=sub,
        fees=FeeInfo(
            unsettled_fee=str(totals.cached_fee),
            total_fee=str(totals.total_fee),
            request_count=totals.request_count,
            disputed_fee=str(
                inference.fee_store.disputed_totals(inference.address, provider).total_fee
            ),
        ),
        auto_funding=funding,
        recent_verifications=recent,
        chain=chain,
    )
