"""Read-only queries of the gateway database for the provider's ops page and ``/metrics``
(:mod:`broker.ui.ops`): unsettled fees per user, settlement history, pending or refused
settlements, request counts by status. Nothing here writes. Fees are neuron (ints; the database
keeps them as decimal strings, ``provider-gateway.md`` B9); times are Unix seconds.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from broker.provider.db import (
    BatchStatus,
    Database,
    RequestRecord,
    RequestStatus,
    SettlementBatch,
)
from broker.provider.settlement import SettlementStatus

__all__ = [
    "RESULT_NAMES",
    "SettlementRow",
    "UserFees",
    "request_counts",
    "settlement_counts",
    "settlements",
    "unsettled_by_user",
]

#: ``SettlementStatus`` values (``contracts.md`` A3.2) in words.
RESULT_NAMES = {
    SettlementStatus.SUCCESS: "SUCCESS",
    SettlementStatus.PARTIAL: "PARTIAL",
    SettlementStatus.PROVIDER_MISMATCH: "PROVIDER_MISMATCH",
    SettlementStatus.NO_TEE_SIGNER: "NO_TEE_SIGNER",
    SettlementStatus.INVALID_NONCE: "INVALID_NONCE",
    SettlementStatus.INVALID_SIGNATURE: "INVALID_SIGNATURE",
}


@dataclass(frozen=True)
class UserFees:
    """One user's fees not yet paid on chain: ``unsettled`` (billed, waiting) and ``settling``
    (in a prepared batch), neuron; ``requests``: how many rows; ``oldest``: Unix s of the oldest."""

    user: str
    unsettled: int
    settling: int
    requests: int
    oldest: float


@dataclass(frozen=True)
class SettlementRow:
    """One settlement batch: ``id``, ``user``, ``amount`` (total fee, neuron), ``paid`` (neuron;
    ``None`` until confirmed), ``tx_hash`` (``None`` before sending), ``status`` (``prepared`` /
    ``confirmed`` / ``rejected``), ``result`` (the contract's result in words or ``None``),
    ``requests`` (rows in the batch), ``created_at`` (Unix s)."""

    id: int
    user: str
    amount: int
    paid: int | None
    tx_hash: str | None
    status: str
    result: str | None
    requests: int
    created_at: float


def unsettled_by_user(db: Database) -> list[UserFees]:
    """Fees per user in ``unsettled`` or ``settling`` rows, largest first.

    The sum is done in Python over the matching rows: fees are decimal strings, and a SQL sum
    would go through floats on SQLite.
    """
    stmt = select(
        RequestRecord.user_address,
        RequestRecord.status,
        RequestRecord.fee,
        RequestRecord.created_at,
    ).where(RequestRecord.status.in_((RequestStatus.UNSETTLED, RequestStatus.SETTLING)))
    acc: dict[str, list] = {}
    with db.engine.connect() as conn:
        for user, status, fee, created in conn.execute(stmt):
            row = acc.setdefault(user, [0, 0, 0, created])
            row[0 if status == RequestStatus.UNSETTLED else 1] += int(fee)
            row[2] += 1
            row[3] = min(row[3], created)
    out = [UserFees(u, *v) for u, v in acc.items()]
    return sorted(out, key=lambda f: (-(f.unsettled + f.settling), f.user))


def settlements(db: Database, limit: int = 100, status: str | None = None) -> list[SettlementRow]:
    """The newest ``limit`` settlement batches (optionally only ``status``), newest first."""
    counts = (
        select(RequestRecord.batch_id, func.count().label("n"))
        .where(RequestRecord.batch_id.is_not(None))
        .group_by(RequestRecord.batch_id)
        .subquery()
    )
    stmt = (
        select(SettlementBatch, func.coalesce(counts.c.n, 0))
        .outerjoin(counts, counts.c.batch_id == SettlementBatch.id)
        .order_by(SettlementBatch.id.desc())
        .limit(max(1, limit))
    )
    if status is not None:
        stmt = stmt.where(SettlementBatch.status == status)
    rows = []
    with db.session() as s:
        for batch, n in s.execute(stmt):
            paid = None
            if batch.status == BatchStatus.CONFIRMED:
                paid = int(batch.total_fee) - int(batch.unsettled_amount or 0)
            rows.append(
                SettlementRow(
                    id=batch.id,
                    user=batch.user_address,
                    amount=int(batch.total_fee),
                    paid=paid,
                    tx_hash=batch.tx_hash,
                    status=batch.status,
                    result=RESULT_NAMES.get(batch.result_status)
                    if batch.result_status is not None
                    else None,
                    requests=int(n),
                    created_at=batch.created_at,
                )
            )
    return rows


def settlement_counts(db: Database) -> dict[str, int]:
    """Settlement batches by status (every :class:`BatchStatus` value present, 0 when none)."""
    out = {BatchStatus.PREPARED: 0, BatchStatus.CONFIRMED: 0, BatchStatus.REJECTED: 0}
    with db.engine.connect() as conn:
        for status, n in conn.execute(
            select(SettlementBatch.status, func.count()).group_by(SettlementBatch.status)
        ):
            out[status] = int(n)
    return out


def request_counts(db: Database) -> dict[str, int]:
    """Request rows by status (``pending``, ``unsettled``, ``settling``, ``settled``,
    ``failed``)."""
    out = {
        s: 0
        for s in (
            RequestStatus.PENDING,
            RequestStatus.UNSETTLED,
            RequestStatus.SETTLING,
            RequestStatus.SETTLED,
            RequestStatus.FAILED,
        )
    }
    with db.engine.connect() as conn:
        for status, n in conn.execute(
            select(RequestRecord.status, func.count()).group_by(RequestRecord.status)
        ):
            out[status] = int(n)
    return out
