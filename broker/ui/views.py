"""JSON views shared by the dashboard in ``serve`` and the standalone ``0g-broker ui`` (pure reads
through the library; blocking: call them in a worker thread).

Amounts are neuron as decimal strings plus ``<name>_0g`` exact 0G decimal strings, the shape of
``0g-broker get-account --json`` and ``get-sub-account --json``.
"""

from __future__ import annotations

import time
from typing import Any

from broker._exceptions import BrokerError
from broker.inference.errors import AccountNotFoundError
from broker.ledger.errors import NoLedgerError
from broker.units import format_0g

__all__ = [
    "account_view",
    "amount_fields",
    "provider_view",
    "providers_view",
    "verification_report_view",
]


def amount_fields(name: str, neuron: int) -> dict[str, str]:
    """``{name: "<neuron>", name + "_0g": "<exact 0G decimal>"}`` (as ``get-account --json``)."""
    return {name: str(int(neuron)), f"{name}_0g": format_0g(int(neuron))}


def _sub_account(broker: Any, provider: str, balance: int, pending: int) -> dict[str, Any]:
    """One sub-account row: ``get-account`` fields plus ``get-sub-account`` details (refunds and
    when they unlock, acknowledgement) and the locally accounted unsettled fee."""
    row: dict[str, Any] = {
        "provider": provider,
        **amount_fields("balance", balance),
        **amount_fields("pending_refund", pending),
    }
    try:
        detail = broker.ledger.get_sub_account_with_detail(provider, "inference")
    except BrokerError as exc:
        row["detail_error"] = str(exc)
    else:
        now = int(time.time())
        row.update(
            acknowledged=detail.acknowledged,
            generation=detail.generation,
            lock_time=detail.lock_time,
            refunds=[
                {
                    "index": r.index,
                    **amount_fields("amount", r.amount),
                    "created_at": r.created_at,
                    "remaining_lock": r.remaining_lock,
                    "unlocks_at": now + r.remaining_lock,
                }
                for r in detail.refunds
            ],
        )
    inference = getattr(broker, "inference", None)
    if inference is not None:
        totals = inference.fee_store.get_totals(inference.address, provider)
        row.update(amount_fields("unsettled_fee", totals.cached_fee))
        row["request_count"] = totals.request_count
    return row


def account_view(broker: Any) -> dict[str, Any]:
    """The ledger overview and every inference sub-account.

    Args:
        broker: a :class:`broker.broker.Broker` (``.ledger``, ``.inference``, ``.address``).

    Returns:
        ``{"address", "network", "ledger": bool, "total"/"locked"/"available" (+ ``_0g``),
        "inference": [{"provider", "balance", "pending_refund", "acknowledged", "refunds",
        "unsettled_fee", ... (+ ``_0g``)}]}`` — the numbers of ``get-account --json`` (ledger
        ``getLedger`` / ``getLedgerProviders``) and ``get-sub-account --json``. Without a ledger,
        ``"ledger": false`` and zero amounts.

    Raises:
        RPCError: the node is unreachable.
    """
    network = getattr(getattr(broker, "network", None), "name", None)
    base: dict[str, Any] = {"address": broker.address, "network": network}
    try:
        overview = broker.ledger.get_ledger_with_detail()
    except NoLedgerError:
        return {
            **base,
            "ledger": False,
            **amount_fields("total", 0),
            **amount_fields("locked", 0),
            **amount_fields("available", 0),
            "inference": [],
        }
    return {
        **base,
        "ledger": True,
        **amount_fields("total", overview.total),
        **amount_fields("locked", overview.locked),
        **amount_fields("available", overview.available),
        "inference": [
            _sub_account(broker, s.provider, s.balance, s.pending_refund)
            for s in overview.inference
        ],
    }


def provider_view(service: Any) -> dict[str, Any]:
    """One on-chain service as JSON: type, model, prices (neuron + 0G), verifiability, URL."""
    return {
        "provider": service.provider,
        "service_type": service.service_type,
        "model": service.model,
        "url": service.url,
        **amount_fields("input_price", service.input_price),
        **amount_fields("output_price", service.output_price),
        "verifiability": service.verifiability,
        "verifiable": service.is_verifiable,
        "tee_signer_acknowledged": bool(getattr(service, "tee_signer_acknowledged", False)),
        "updated_at": int(getattr(service, "updated_at", 0) or 0),
    }


def providers_view(inference: Any) -> list[dict[str, Any]]:
    """Every registered service (acknowledged or not), as :func:`provider_view` rows.

    Raises:
        RPCError: the node is unreachable.
    """
    return [provider_view(s) for s in inference.list_service(include_unacknowledged=True)]


def verification_report_view(inference: Any, provider: str) -> dict[str, Any]:
    """Run the attestation check (``InferenceBroker.verify_service``) and give the typed report:
    ``{"provider", "ok": bool, "report": VerificationReport.to_dict() | None, "error": str|None}``;
    a library error is a failed check in words, never an exception."""
    try:
        report = inference.verify_service(provider)
    except AccountNotFoundError as exc:
        return {"provider": provider, "ok": False, "report": None, "error": str(exc)}
    except BrokerError as exc:
        return {
            "provider": provider,
            "ok": False,
            "report": None,
            "error": f"{type(exc).__name__}: {exc}",
        }
    return {
        "provider": provider,
        "ok": bool(report.verified),
        "report": report.to_dict(),
        "error": None,
    }
