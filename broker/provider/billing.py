"""Fee accounting on the gateway (``provider-gateway.md`` B4.5–B4.6, B9).

:class:`FeeLedger` records each billable request durably: a ``pending`` row before forwarding, its
fee (``unsettled``) before the response is released. Fees are ints in neuron (stored as decimal
strings). The fee itself (counts and prices per service type) is the rule both sides share,
:func:`broker.wire.fees.compute_fee`.
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import threading
import time
from concurrent.futures import Future
from typing import Any, TypeVar

import anyio.to_thread
from sqlalchemy import Integer, Numeric, bindparam, cast, func, insert, select, update
from sqlalchemy.exc import DBAPIError

from broker.provider.db import Database, RequestRecord, RequestStatus
from broker.sqlite_writer import SQLiteWriter, WriteOp
from broker.wire.fees import Fee

__all__ = ["FeeLedger"]

_T = TypeVar("_T")


_REQUESTS = RequestRecord.__table__
_OUTSTANDING = (
    _REQUESTS.c.user_address == bindparam("user"),
    _REQUESTS.c.status.in_(RequestStatus.OUTSTANDING),
)
_OPEN = insert(_REQUESTS)
_ROW = select(_REQUESTS.c.user_address, _REQUESTS.c.status, _REQUESTS.c.fee).where(
    _REQUESTS.c.request_hash == bindparam("rid")
)
# a fee is written, or a request failed, once: only a ``pending`` row moves (a second bill
# cannot make a settled fee unsettled again, a late failure cannot drop a billed fee)
_PENDING_ROW = (
    _REQUESTS.c.request_hash == bindparam("rid"),
    _REQUESTS.c.status == RequestStatus.PENDING,
)
_BILL = update(_REQUESTS).where(*_PENDING_ROW).values(status=RequestStatus.UNSETTLED)
_FAIL = update(_REQUESTS).where(*_PENDING_ROW).values(status=RequestStatus.FAILED)
# SQLite has 64-bit integers: sum the last 9 digits and the digits above them apart
_SQLITE_SUM = select(
    func.sum(cast(func.substr(_REQUESTS.c.fee, -9), Integer)),
    func.sum(cast(func.substr(_REQUESTS.c.fee, 1, func.length(_REQUESTS.c.fee) - 9), Integer)),
    func.max(func.length(_REQUESTS.c.fee)),
).where(*_OUTSTANDING)
_NUMERIC_SUM = select(func.sum(cast(_REQUESTS.c.fee, Numeric))).where(*_OUTSTANDING)
_FEES = select(_REQUESTS.c.fee).where(*_OUTSTANDING)

# the same statements in SQLite's own SQL, for the group-commit writer's plain sqlite3 connection
_SQL_OPEN = (
    "INSERT INTO requests (request_hash, user_address, service_type, model, input_count, "
    "output_count, input_fee, output_fee, fee, status, batch_id, created_at, updated_at) "
    "VALUES (?, ?, ?, ?, 0, 0, '0', '0', '0', ?, NULL, ?, ?)"
)
_SQL_ROW = "SELECT user_address, status, fee FROM requests WHERE request_hash = ?"
_SQL_BILL = (
    "UPDATE requests SET status = ?, input_count = ?, output_count = ?, input_fee = ?, "
    "output_fee = ?, fee = ?, updated_at = ? WHERE request_hash = ? AND status = 'pending'"
)
_SQL_FAIL = (
    "UPDATE requests SET status = ?, updated_at = ? WHERE request_hash = ? AND status = 'pending'"
)

#: Open requests whose user this process remembers (for the outstanding totals); oldest dropped.
_OPEN_USERS_MAX = 100_000


def _no_write(_conn: sqlite3.Connection) -> None:
    """A write that changes nothing (queued behind others to learn when they are applied)."""


def _request_row(conn: Any, raw: bool, request_hash: str) -> Any:
    """``(user_address, status, fee)`` of one request row, or ``None``; ``raw``: ``conn`` is the
    writer's plain ``sqlite3`` connection, else a SQLAlchemy connection."""
    if raw:
        return conn.execute(_SQL_ROW, (request_hash,)).fetchone()
    return conn.execute(_ROW, {"rid": request_hash}).first()


def _outstanding(status: str | None, fee: str | None) -> int:
    """What a row adds to its user's outstanding fees (neuron)."""
    return int(fee or 0) if status in RequestStatus.OUTSTANDING else 0


class FeeLedger:
    """Durable per-request fee records (B9) on a :class:`~broker.provider.db.Database`.

    The per-request writes run as :data:`~broker.sqlite_writer.WriteOp` functions: on a
    SQLite file through the database's group-commit writer (plain ``sqlite3``, one commit shared
    by the requests that arrive meanwhile; the ``_async`` methods commit inline on the event
    loop's thread when it is idle, :meth:`SQLiteWriter.arun
    <broker.sqlite_writer.SQLiteWriter.arun>`), elsewhere in one engine transaction (prebuilt
    SQLAlchemy Core statements, in a worker thread for the ``_async`` methods). Either way a
    method returns only after its commit. On SQLite the
    per-user outstanding fees are kept in memory (:attr:`Database.outstanding
    <broker.provider.db.Database>`) and moved by each committed bill.
    """

    def __init__(self, db: Database) -> None:
        self.db = db
        self._sqlite = db.engine.dialect.name == "sqlite"
        self._open_users: dict[str, str] = {}  # request hash -> user (open requests)
        self._open_lock = threading.Lock()

    # ------------------------------------------------------------------ write plumbing

    def _remember_user(self, request_hash: str, user: str) -> None:
        with self._open_lock:
            self._open_users[request_hash] = user
            if len(self._open_users) > _OPEN_USERS_MAX:
                self._open_users.pop(next(iter(self._open_users)))

    def _take_user(self, request_hash: str) -> str | None:
        with self._open_lock:
            return self._open_users.pop(request_hash, None)

    def _change(self, request_hash: str, op: WriteOp[_T], user: str | None) -> _T:
        """Run ``op`` (a write returning ``(user, delta)`` first in its result tuple, the change
        of that user's outstanding fees) and move the in-memory total once committed."""
        if self.db.writer is None:
            return self.db.write(op)  # no in-memory totals
        return self._submit_change(request_hash, op, user).result()

    def _begin_change(self, request_hash: str, user: str | None) -> str | None:
        """The user whose in-memory total a write of ``request_hash`` may move (``user``, else the
        one remembered from its open), announced to :attr:`Database.outstanding
        <broker.provider.db.Database>` (:meth:`~broker.provider.outstanding.OutstandingFees.begin`)
        when totals are kept."""
        user = user or self._take_user(request_hash)
        out = self.db.outstanding
        if out is not None and user is not None:
            out.begin(user)
        return user

    def _end_change(self, user: str | None, result: tuple | None) -> None:
        """Move the in-memory total once the write :meth:`_begin_change` announced is over:
        ``result`` is the committed op's ``(row user, delta, ...)``, or ``None`` when it is not
        known to be committed (the user's total is then dropped and loaded again)."""
        out = self.db.outstanding
        if out is None:
            return
        if result is None:
            if user is not None:
                out.end(user, None)
            return
        row_user, delta = result[:2]
        same = row_user is None or (user is not None and row_user.lower() == user.lower())
        if user is not None:
            out.end(user, delta if same else None)
        if not same:
            out.forget(row_user)

    def _submit_change(self, request_hash: str, op: WriteOp[_T], user: str | None) -> Future[_T]:
        """:meth:`_change` through the SQLite writer, without waiting: the in-memory total moves
        when the commit is done (a callback), whoever waits for the future or not."""
        writer = self.db.writer
        assert writer is not None
        user = self._begin_change(request_hash, user)

        def committed(done: Future) -> None:
            failed = done.cancelled() or done.exception() is not None
            self._end_change(user, None if failed else done.result())

        try:
            future = writer.submit(op)
        except BaseException:
            self._end_change(user, None)
            raise
        future.add_done_callback(committed)
        return future

    async def _arun_change(self, request_hash: str, op: WriteOp[_T], user: str | None) -> _T:
        """:meth:`_change` for the event loop: :meth:`SQLiteWriter.arun
        <broker.sqlite_writer.SQLiteWriter.arun>` (committed inline on the loop's thread when the
        writer is idle, else queued to it and awaited), then the in-memory total moves.

        Cancelled while its write waits in the writer's queue, the write still runs (committed,
        or failed alone) and the coroutine raises :class:`asyncio.CancelledError` at once; the
        user's total is dropped (loaded again from the database) once the write is over, known
        from a no-op queued behind it (the writer applies its queue in order).

        Returns:
            ``op``'s result, once committed.

        Raises:
            asyncio.CancelledError: the awaiting task was cancelled (see above). Otherwise what
                ``op`` or the commit raise (nothing committed), or RuntimeError (writer closed).
        """
        writer = self.db.writer
        assert writer is not None
        user = self._begin_change(request_hash, user)
        try:
            result = await writer.arun(op)
        except asyncio.CancelledError:
            self._end_when_applied(writer, user)
            raise
        except BaseException:
            self._end_change(user, None)
            raise
        self._end_change(user, result)  # type: ignore[arg-type]
        return result

    def _end_when_applied(self, writer: SQLiteWriter, user: str | None) -> None:
        """After a cancelled :meth:`_arun_change`: once the writes queued so far are applied,
        drop the totals it may have moved (``user``'s; everyone's when the row's user is not
        known here)."""
        out = self.db.outstanding
        if out is None:
            return

        def applied(_done: Future) -> None:
            if user is not None:
                out.end(user, None)
            else:
                out.forget()

        try:
            writer.submit(_no_write).add_done_callback(applied)
        except RuntimeError:  # closed: nothing is applied any more
            applied(Future())

    # ------------------------------------------------------------------ ops

    def open_op(self, request_hash: str, user: str, service_type: str, model: str) -> WriteOp[None]:
        """The write of :meth:`open_request` (a ``pending`` zero-fee row)."""
        now = time.time()

        def op(conn: Any) -> None:
            if isinstance(conn, sqlite3.Connection):
                conn.execute(
                    _SQL_OPEN,
                    (request_hash, user, service_type, model, RequestStatus.PENDING, now, now),
                )
                return
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

        return op

    def bill_op(
        self, request_hash: str, fee: Fee, also: WriteOp[_T] | None = None, *, track: bool = True
    ) -> WriteOp[tuple[str | None, int, _T | None]]:
        """The write of :meth:`bill`, plus ``also`` (e.g. the response signature) in the same
        transaction. The op returns ``(user, change of the user's outstanding fees in neuron,
        also's result)``; ``user`` is ``None`` when not read (no in-memory totals kept, or
        ``track`` false)."""
        now = time.time()
        track = track and self.db.outstanding is not None
        values = (
            fee.input_count,
            fee.output_count,
            str(fee.input_fee),
            str(fee.output_fee),
            str(fee.fee),
            now,
        )

        def op(conn: Any) -> tuple[str | None, int, Any]:
            raw = isinstance(conn, sqlite3.Connection)
            user, delta = None, 0
            if track and (row := _request_row(conn, raw, request_hash)) is not None:
                user = row[0]
                delta = fee.fee if row[1] == RequestStatus.PENDING else 0  # a pending fee is 0
            if raw:
                conn.execute(_SQL_BILL, (RequestStatus.UNSETTLED, *values, request_hash))
            else:
                conn.execute(
                    _BILL,
                    {
                        "rid": request_hash,
                        "input_count": fee.input_count,
                        "output_count": fee.output_count,
                        "input_fee": values[2],
                        "output_fee": values[3],
                        "fee": values[4],
                        "updated_at": now,
                    },
                )
            return user, delta, (also(conn) if also is not None else None)

        return op

    def fail_op(self, request_hash: str) -> WriteOp[tuple[str | None, int]]:
        """The write of :meth:`fail`; returns ``(user, change of outstanding fees)`` like
        :meth:`bill_op`."""
        now = time.time()
        track = self.db.outstanding is not None

        def op(conn: Any) -> tuple[str | None, int]:
            raw = isinstance(conn, sqlite3.Connection)
            user, delta = None, 0
            if track and (row := _request_row(conn, raw, request_hash)) is not None:
                pending = row[1] == RequestStatus.PENDING
                user, delta = row[0], (-_outstanding(row[1], row[2]) if pending else 0)
            if raw:
                conn.execute(_SQL_FAIL, (RequestStatus.FAILED, now, request_hash))
            else:
                conn.execute(_FAIL, {"rid": request_hash, "updated_at": now})
            return user, delta

        return op

    # ------------------------------------------------------------------ per request

    def open_request(self, request_hash: str, user: str, service_type: str, model: str) -> None:
        """Insert the ``pending`` zero-fee row before forwarding (B4.6); committed on return."""
        self.db.write(self.open_op(request_hash, user, service_type, model))
        self._remember_user(request_hash, user)

    def bill(
        self,
        request_hash: str,
        fee: Fee,
        *,
        user: str | None = None,
        also: WriteOp[_T] | None = None,
    ) -> _T | None:
        """Record the fee (status ``unsettled``) of a ``pending`` row (a row already billed,
        settled or failed is left as it is: billing twice changes nothing); committed (durable)
        on return, before release.

        Args:
            request_hash: the row's id (the ``ZG-Res-Key``). fee: counts and fees in neuron.
            user: the row's user when known (else remembered from :meth:`open_request`).
            also: another write op committed in the same transaction (the response signature:
                :meth:`broker.provider.signing.SignatureStore.store_op`).

        Returns:
            ``also``'s result (``None`` without it).
        """
        return self._change(request_hash, self.bill_op(request_hash, fee, also), user)[2]

    def fail(self, request_hash: str, *, user: str | None = None) -> None:
        """Mark a ``pending`` request that produced no billable output (never charged); a
        billed row is left as it is."""
        self._change(request_hash, self.fail_op(request_hash), user)

    async def open_request_async(
        self, request_hash: str, user: str, service_type: str, model: str
    ) -> None:
        """:meth:`open_request` for the event loop: on SQLite :meth:`SQLiteWriter.arun
        <broker.sqlite_writer.SQLiteWriter.arun>` (committed inline when the writer is idle, else
        by the writer and awaited; no worker thread), on other databases :meth:`open_request` in
        a worker thread. Committed on return; once asked for, the row is written even if the
        awaiting task is cancelled (a ``pending`` zero-fee row: nothing charged)."""
        writer = self.db.writer
        if writer is None:
            await anyio.to_thread.run_sync(
                self.open_request, request_hash, user, service_type, model
            )
            return
        await writer.arun(self.open_op(request_hash, user, service_type, model))
        self._remember_user(request_hash, user)

    async def bill_async(
        self,
        request_hash: str,
        fee: Fee,
        *,
        user: str | None = None,
        also: WriteOp[_T] | None = None,
    ) -> _T | None:
        """:meth:`bill` for the event loop: on SQLite through :meth:`_arun_change` (committed
        inline when the writer is idle, else by the writer and awaited; no worker thread), on
        other databases :meth:`bill` in a worker thread. Committed (durable) on return; once asked
        for, the write is committed even if the awaiting task is cancelled."""
        if self.db.writer is None:
            return await anyio.to_thread.run_sync(
                functools.partial(self.bill, request_hash, fee, user=user, also=also)
            )
        op = self.bill_op(request_hash, fee, also)
        return (await self._arun_change(request_hash, op, user))[2]

    async def fail_async(self, request_hash: str, *, user: str | None = None) -> None:
        """:meth:`fail` for the event loop (like :meth:`bill_async`: no worker thread on
        SQLite, committed even if the awaiting task is cancelled)."""
        if self.db.writer is None:
            await anyio.to_thread.run_sync(functools.partial(self.fail, request_hash, user=user))
            return
        await self._arun_change(request_hash, self.fail_op(request_hash), user)

    def unsettled_fee_cached(self, user: str) -> int | None:
        """:meth:`unsettled_fee` when it is kept in memory (no I/O: safe on the event loop), else
        ``None`` (then call :meth:`unsettled_fee` off the loop)."""
        out = self.db.outstanding
        if out is None:
            return None
        return out.peek(user)

    def unsettled_fee(self, user: str) -> int:
        """Sum in neuron of the user's fees not yet settled (pending, unsettled, settling).

        On a SQLite file the sum is kept in memory per user (:mod:`broker.provider.outstanding`);
        otherwise (and to load that total) it is summed in the database: one aggregate over a
        covering index, exactly: PostgreSQL sums the decimal strings as ``NUMERIC``; SQLite (64-bit
        integers) sums the last 9 digits and the digits above them separately, and sums in
        Python when a fee has more than 27 digits or the total overflows.
        """
        out = self.db.outstanding
        if out is None:
            return self.stored_unsettled_fee(user)
        return out.get(user, self.stored_unsettled_fee)

    def stored_unsettled_fee(self, user: str) -> int:
        """:meth:`unsettled_fee` summed in the database (no memory)."""
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
