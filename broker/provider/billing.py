"""Fee accounting on the gateway (``provider-gateway.md`` B4.5–B4.6, B9).

:class:`FeeLedger` records each billable request durably: a ``pending`` row before forwarding, its
fee (``unsettled``) before the response is released. Fees are ints in neuron (stored as decimal
strings). The fee itself (counts and prices per service type) is the rule both sides share,
:func:`broker.wire.fees.compute_fee`.
"""

from __future__ import annotations

import time

from sqlalchemy import Integer, Numeric, bindparam, cast, func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError

from broker.provider.db import Database, RequestRecord, RequestStatus
from broker.wire.fees import Fee

__all__ = ["FeeLedger"]


_REQUESTS = RequestRecord.__table__
_OUTSTANDING = (
    _REQUESTS.c.user_address == bindparam("user"),
    _REQUESTS.c.status.in_(RequestStatus.OUTSTANDING),
)
_OPEN = insert(_REQUESTS)
_BILL = (
    update(_REQUESTS)
    .where(_REQUESTS.c.request_hash == bindparam("rid"))
    .values(status=RequestStatus.UNSETTLED)
)
_FAIL = (
    update(_REQUESTS)
    .where(_REQUESTS.c.request_hash == bindparam("rid"))
    .values(status=RequestStatus.FAILED)
)
# SQLite has 64-bit integers: sum the last 9 digits and the digits above them apart
_SQLITE_SUM = select(
    func.sum(cast(func.substr(_REQUESTS.c.fee, -9), Integer)),
    func.sum(cast(func.substr(_REQUESTS.c.fee, 1, func.length(_REQUESTS.c.fee) - 9), Integer)),
    func.max(func.length(_REQUESTS.c.fee)),
).where(*_OUTSTANDING)
_NUMERIC_SUM = select(func.sum(cast(_REQUESTS.c.fee, Numeric))).where(*_OUTSTANDING)
_FEES = select(_REQUESTS.c.fee).where(*_OUTSTANDING)


class FeeLedger:
    """Durable per-request fee records (B9) on a :class:`~broker.provider.db.Database`.

    The per-request methods use prebuilt SQLAlchemy Core statements on the engine (no ORM
    session): they run on every billed request.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._sqlite = db.engine.dialect.name == "sqlite"

    def open_request(self, request_hash: str, user: str, service_type: str, model: str) -> None:
        """Insert the ``pending`` zero-fee row before forwarding (B4.6); committed on return."""
        now = time.time()
        with self.db.engine.begin() as conn:
            conn.execute(
                _OPEN,
                {
                    "request_hash": request_hash,
                    "user_address": user,
                    "service_type": service_type,
                    "model": model,
                    "status": RequestStatus.PENDING,
                    "created_at": now,
                    "updated_at": now,
                },
            )

    def bill(self, request_hash: str, fee: Fee, *, conn: Connection | None = None) -> None:
        """Record the fee (status ``unsettled``); committed (durable) on return, before release.

        With ``conn`` (a connection inside an open transaction) the update joins it and the caller
        commits, so the fee and the response signature are written by one commit (see
        :mod:`broker.provider.app`).
        """
        params = {
            "rid": request_hash,
            "input_count": fee.input_count,
            "output_count": fee.output_count,
            "input_fee": str(fee.input_fee),
            "output_fee": str(fee.output_fee),
            "fee": str(fee.fee),
            "updated_at": time.time(),
        }
        if conn is not None:
            conn.execute(_BILL, params)
            return
        with self.db.engine.begin() as c:
            c.execute(_BILL, params)

    def fail(self, request_hash: str) -> None:
        """Mark a request that produced no billable output (never charged)."""
        with self.db.engine.begin() as conn:
            conn.execute(_FAIL, {"rid": request_hash, "updated_at": time.time()})

    def unsettled_fee(self, user: str) -> int:
        """Sum in neuron of the user's fees not yet settled (pending, unsettled, settling).

        Summed in the database (one aggregate over a covering index, no rows to Python), exactly:
        PostgreSQL sums the decimal strings as ``NUMERIC``; SQLite (64-bit integers) sums the last
        9 digits and the digits above them separately, and sums in Python when a fee has more than
        27 digits or the total overflows.
        """
        with self.db.engine.connect() as conn:
            if not self._sqlite:
                return int(conn.execute(_NUMERIC_SUM, {"user": user}).scalar() or 0)
            try:
                lo, hi, longest = conn.execute(_SQLITE_SUM, {"user": user}).one()
                # SQLite clamps a CAST beyond 64 bits: a fee of more than 27 digits is summed
                # in Python (as is a total that overflows SUM)
                if (longest or 0) <= 27:
                    return (hi or 0) * 10**9 + (lo or 0)
            except DBAPIError:  # "integer overflow" of SUM
                conn.rollback()
            fees = conn.execute(_FEES, {"user": user}).scalars().all()
            return sum(int(f) for f in fees)

    def users_with_unsettled(self) -> list[str]:
        """Users that have ``unsettled`` rows with a non-zero fee, oldest first."""
        with self.db.session() as s:
            rows = s.execute(
                select(RequestRecord.user_address, RequestRecord.fee)
                .where(RequestRecord.status == RequestStatus.UNSETTLED)
                .order_by(RequestRecord.created_at)
            ).all()
        seen: dict[str, None] = {}
        for user, fee in rows:
            if int(fee) > 0:
                seen.setdefault(user, None)
        return list(seen)
