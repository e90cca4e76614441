"""Persistent local state of the inference broker, in SQLite (default) or PostgreSQL through
SQLAlchemy 2.

Five tables:

* ``fee_totals`` — per (user, provider): ``cached_fee`` (the SDK's ``<provider>_cachedFee``,
  user-broker.md 7.2: increased by ``process_response``, overwritten by ``/unsettledfee``, reset to
  0 after a funding transfer), ``total_fee`` (lifetime sum, never reset) and ``request_count``. The
  SDK keeps this in memory only (§13 item 3); here a restart loses nothing.
* ``verification_results`` — recent response verifications for dashboards (bounded).
* ``issued_tokens`` — persistent API-key ids handed out per (user, provider, generation), so that
  repeated ``get_secret`` calls do not reuse id 0 (§13 item 10).
* ``async_jobs`` — async image jobs submitted through ``serve`` per (user, provider, job id): the
  requested image count and whether the job is ``pending``, ``billed`` (its fee was added to
  ``fee_totals`` in the same transaction, exactly once) or ``failed`` (never billed), so that a
  restarted ``serve`` neither loses nor double-counts a job's fee (provider-gateway.md B9: the
  provider bills an async job when it completes).
* ``disputed_fees`` — the provider's charge for responses that ``serve --verify enforce`` refused
  (their signature did not bind the bytes received): one row per refused response (chat id, fee,
  reason). The fee is owed to the provider all the same (it billed the request), so it is also added
  to ``cached_fee`` (the unsettled estimate used for funding) but not to ``total_fee``: accepted
  plus disputed fees equal what the gateway billed, and the disputed part stays visible.

Amounts are ints in neuron, stored as decimal TEXT (they exceed 64-bit integers). Reads run on
pooled SQLAlchemy connections without any lock and see every committed write. Writes on a
**SQLite file** go through one writer thread per store (:class:`broker.sqlite_writer.SQLiteWriter`:
one plain :mod:`sqlite3` connection, group commit): the per-request writes
(:meth:`FeeStore.record_exchange`, :meth:`~FeeStore.add_fee`, :meth:`~FeeStore.record_verification`,
:meth:`~FeeStore.record_disputed` and their ``a``-prefixed twins) are plain parameterised SQL
(:mod:`broker.inference.fee_store_sql`), their input checked before they are queued; every write
queued while the previous transaction ran is applied in the next one, up to
:data:`~broker.sqlite_writer.GROUP_COMMIT_MAX` per ``BEGIN IMMEDIATE … COMMIT``, without savepoints
(should one still fail, the group is applied again with a savepoint per write, so it fails alone),
and each caller gets its answer only after that commit (no added waiting: the window is the
previous transaction's duration). The rare writes (async jobs, issued-token ids, the cached fee's
overwrite) keep their SQLAlchemy ORM code and run on the same thread between two groups. Across
processes SQLite serialises by ``BEGIN IMMEDIATE`` (WAL journal: readers never wait for the
writer). (Measured: letting threads contend on ``BEGIN IMMEDIATE`` directly spends most of serve's
time in SQLite's busy-retry sleeps; an ORM session per group cost serve about a third of its CPU.)
On **PostgreSQL** each write is its own SQLAlchemy transaction, serialised by
``INSERT … ON CONFLICT DO NOTHING`` plus ``SELECT … FOR UPDATE`` of the fee row; an in-memory
SQLite database is written inline through SQLAlchemy.
Addresses are stored lower-cased. Callers on an event loop (``serve``) use the ``a``-prefixed twins
(:meth:`FeeStore.arecord_exchange`, :meth:`FeeStore.aadd_fee`,
:meth:`FeeStore.arecord_verification`, :meth:`FeeStore.arecord_disputed`): on a SQLite file the
write is committed by the caller itself when the writer is idle, else handed to the writer thread,
and the coroutine resumes once it is committed (:meth:`broker.sqlite_writer.SQLiteWriter.arun`; no
worker thread of the caller's waits on it); on PostgreSQL the transaction runs in a worker thread.

Durability (SQLite): ``journal_mode=WAL`` with ``synchronous=NORMAL``. A write method returns only
after its transaction is committed to the WAL, so an acknowledged fee or verification survives
``kill -9`` of the process; a power loss or OS crash can lose the commits made since the last WAL
checkpoint, never corrupting the file: the writer checkpoints (fsync) at most
:data:`~broker.sqlite_writer.CHECKPOINT_INTERVAL` (1 s) after a commit, so that is about the last
second of writes. A lost fee only makes the local ``cached_fee`` estimate low until the next
``/unsettledfee`` sync.
"""

from __future__ import annotations

import asyncio
import enum
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    Integer,
    String,
    Text,
    UniqueConstraint,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from broker.inference import fee_store_sql
from broker.inference.response_signature import VerificationReason, VerificationResult
from broker.sqlite_writer import SQLiteWriter, WriteOp

__all__ = [
    "AsyncJob",
    "AsyncJobStatus",
    "DisputedTotals",
    "FeeStore",
    "FeeTotals",
    "VerificationRecord",
    "default_database_url",
]

DEFAULT_MAX_VERIFICATIONS = 1000
_T = TypeVar("_T")
#: The verification log is pruned to ``max_verifications`` rows once every this many inserts (so
#: it holds at most ``max_verifications + PRUNE_EVERY - 1`` rows between prunes).
PRUNE_EVERY = 100


def default_database_url() -> str:
    """``sqlite:///<broker_home()>/inference.db`` (``$ZG_HOME``, default ``~/.0g-broker``)."""
    from broker.config.settings import broker_home

    return f"sqlite:///{broker_home() / 'inference.db'}"


class _Base(DeclarativeBase):
    pass


class _FeeRow(_Base):
    __tablename__ = "fee_totals"
    user: Mapped[str] = mapped_column(String(42), primary_key=True)
    provider: Mapped[str] = mapped_column(String(42), primary_key=True)
    cached_fee: Mapped[str] = mapped_column(Text, default="0")
    total_fee: Mapped[str] = mapped_column(Text, default="0")
    request_count: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[float] = mapped_column(default=0.0)


class _VerificationRow(_Base):
    __tablename__ = "verification_results"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user: Mapped[str] = mapped_column(String(42), index=True)
    provider: Mapped[str] = mapped_column(String(42), index=True)
    chat_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    verified: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    reason: Mapped[str] = mapped_column(String(64))
    signer: Mapped[str | None] = mapped_column(String(42), nullable=True)
    detail: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[float] = mapped_column(index=True)


_FEES = _FeeRow.__table__
_VERIFICATIONS = _VerificationRow.__table__
_SELECT_FEES = (
    select(_FEES.c.cached_fee, _FEES.c.total_fee, _FEES.c.request_count)
    .where(_FEES.c.user == bindparam("u"), _FEES.c.provider == bindparam("p"))
    .with_for_update()
)
_UPDATE_FEES = (
    _FEES.update()
    .where(_FEES.c.user == bindparam("u"), _FEES.c.provider == bindparam("p"))
    .values(
        cached_fee=bindparam("c"),
        total_fee=bindparam("t"),
        request_count=bindparam("n"),
        updated_at=bindparam("at"),
    )
)


class _IssuedTokenRow(_Base):
    __tablename__ = "issued_tokens"
    __table_args__ = (UniqueConstraint("user", "provider", "generation", "token_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user: Mapped[str] = mapped_column(String(42))
    provider: Mapped[str] = mapped_column(String(42))
    generation: Mapped[int] = mapped_column(Integer)
    token_id: Mapped[int] = mapped_column(Integer)
    # Unix milliseconds exceed 32 bits (PostgreSQL's INTEGER)
    created_at_ms: Mapped[int] = mapped_column(BigInteger)
    expires_at_ms: Mapped[int] = mapped_column(BigInteger)


class _DisputedFeeRow(_Base):
    __tablename__ = "disputed_fees"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user: Mapped[str] = mapped_column(String(42), index=True)
    provider: Mapped[str] = mapped_column(String(42), index=True)
    chat_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    fee: Mapped[str] = mapped_column(Text, default="0")
    reason: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(default=0.0)


class _AsyncJobRow(_Base):
    __tablename__ = "async_jobs"
    user: Mapped[str] = mapped_column(String(42), primary_key=True)
    provider: Mapped[str] = mapped_column(String(42), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    images: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), index=True)
    fee: Mapped[str] = mapped_column(Text, default="0")
    created_at: Mapped[float] = mapped_column(default=0.0)
    updated_at: Mapped[float] = mapped_column(default=0.0)


class AsyncJobStatus(enum.StrEnum):
    """Local billing state of an async image job."""

    PENDING = "pending"
    BILLED = "billed"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class AsyncJob:
    """One async image job submitted through ``serve``.

    Attributes:
        user, provider: lower-cased addresses. job_id: the provider's job id.
        images: requested image count (``n``). status: :class:`AsyncJobStatus`.
        fee: neuron added to the fee totals when billed (0 otherwise).
        created_at, updated_at: Unix seconds.
    """

    user: str
    provider: str
    job_id: str
    images: int
    status: AsyncJobStatus
    fee: int
    created_at: float
    updated_at: float


def _async_job(row: _AsyncJobRow) -> AsyncJob:
    return AsyncJob(
        row.user,
        row.provider,
        row.job_id,
        row.images,
        AsyncJobStatus(row.status),
        int(row.fee),
        row.created_at,
        row.updated_at,
    )


@dataclass(frozen=True, slots=True)
class FeeTotals:
    """Fee counters of one (user, provider), in neuron."""

    cached_fee: int
    total_fee: int
    request_count: int


@dataclass(frozen=True, slots=True)
class DisputedTotals:
    """Refused-but-billed responses of one (user, provider): how many and their fees (neuron)."""

    count: int
    total_fee: int


@dataclass(frozen=True, slots=True)
class VerificationRecord:
    """One stored verification; ``created_at`` is Unix seconds (float)."""

    user: str
    provider: str
    chat_id: str | None
    verified: bool | None
    reason: VerificationReason
    signer: str | None
    detail: str
    created_at: float


def _in_memory(url: str) -> bool:
    """An in-memory SQLite URL (one database per connection)."""
    return ":memory:" in url or url == "sqlite://"


def _text_or_none(value: object) -> str | None:
    """``value`` as stored in a nullable TEXT column (what SQLAlchemy's ``Text`` binds)."""
    return None if value is None else str(value)


def _verification_values(
    result: VerificationResult,
) -> tuple[str | None, bool | None, str, str | None, str]:
    """``(chat_id, verified, reason, signer, detail)`` of one verification row, as the ORM path
    stores them (``detail`` cut to 1000 characters)."""
    verified = None if result.verified is None else bool(result.verified)
    return (
        _text_or_none(result.chat_id),
        verified,
        VerificationReason(result.reason).value,
        _text_or_none(result.signer),
        str(result.detail)[:1000],
    )


def _check_fee(fee: int) -> None:
    if isinstance(fee, bool) or not isinstance(fee, int) or fee < 0:
        raise ValueError(f"fee must be a non-negative int in neuron, got {fee!r}")


class FeeStore:
    """Thread-safe persistent fee totals, verification log, issued-token ids and async-job billing
    state.

    Args:
        url: SQLAlchemy URL (default :func:`default_database_url`; also
            ``postgresql+psycopg://…``); the SQLite file's directory is created if missing.
        max_verifications: how many verification rows to keep (oldest pruned).
    """

    def __init__(
        self, url: str | None = None, *, max_verifications: int = DEFAULT_MAX_VERIFICATIONS
    ):
        self.url = url or default_database_url()
        self.max_verifications = max_verifications
        self._engine = self._make_engine(self.url)
        _Base.metadata.create_all(self._engine)
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        self._inserts_lock = threading.Lock()
        self._inserts = 0
        self._writer: SQLiteWriter | None = None
        if self._engine.dialect.name == "sqlite" and not _in_memory(self.url):
            self._writer = SQLiteWriter(
                str(self._engine.url.database), name="fee-store-writer", savepoints=False
            )
        self._prune_verifications()

    def _session_write(self, op: Callable[[Session], _T]) -> _T:
        """Run ``op(session)`` in one SQLAlchemy transaction (this thread) and return its result
        once committed. Exceptions of ``op`` or of the commit propagate (nothing written)."""
        with self._sessions.begin() as session:
            return op(session)

    def _write(self, op: Callable[[Session], _T]) -> _T:
        """A rarely used write (an ORM ``op(session)``): on a SQLite file run by the writer thread
        between its groups (no contention for SQLite's lock), else in this thread. Returns ``op``'s
        result once committed; its exceptions propagate."""
        if self._writer is not None:
            return self._writer.run_alone(lambda: self._session_write(op))
        return self._session_write(op)

    def _write_hot(self, op: Callable[[Any], _T]) -> _T:
        """A per-request write built by :meth:`_exchange_op` / :meth:`_disputed_op` (a
        :data:`~broker.sqlite_writer.WriteOp` on a SQLite file: the writer's group commit; else an
        ORM op): its result once committed; its exceptions propagate."""
        if self._writer is not None:
            return self._writer.run(op)
        return self._session_write(op)

    async def _awrite_hot(self, op: Callable[[Any], _T]) -> _T:
        """:meth:`_write_hot` for a caller on an event loop: on a SQLite file
        :meth:`SQLiteWriter.arun <broker.sqlite_writer.SQLiteWriter.arun>` (committed inline when
        the writer is idle, else by the writer and awaited; a cancelled caller's write is still
        committed);
        PostgreSQL's transaction runs in a worker thread; an in-memory database (one connection)
        is written inline."""
        if self._writer is not None:
            return await self._writer.arun(op)
        if _in_memory(self.url):
            return self._session_write(op)
        return await asyncio.to_thread(self._session_write, op)

    @staticmethod
    def _make_engine(url: str) -> Engine:
        if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
            Path(url[len("sqlite:///") :]).expanduser().parent.mkdir(parents=True, exist_ok=True)
        if not url.startswith("sqlite"):
            options: dict = {"pool_pre_ping": True}
        elif _in_memory(url):
            options = {}
        else:  # a connection per concurrent worker thread, kept (no connect/close churn)
            options = {"pool_size": 40, "max_overflow": 40}
        engine = create_engine(url, **options)
        if engine.dialect.name == "sqlite":

            @event.listens_for(engine, "connect")
            def _connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
                dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
                dbapi_connection.execute("PRAGMA busy_timeout = 10000")
                if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
                    dbapi_connection.execute("PRAGMA journal_mode = WAL")
                    dbapi_connection.execute("PRAGMA synchronous = NORMAL")

            @event.listens_for(engine, "begin")
            def _begin(conn):  # type: ignore[no-untyped-def]
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        return engine

    def close(self) -> None:
        """Stop the writer (after the writes already queued) and dispose of the connections."""
        if self._writer is not None:
            self._writer.close()
        self._engine.dispose()

    def __repr__(self) -> str:
        return f"FeeStore({self._engine.url.render_as_string(hide_password=True)!r})"

    # -- fees --------------------------------------------------------------------------------

    def _row(self, session: Session, user: str, provider: str) -> _FeeRow:
        """The fee row of (user, provider), created if missing, locked for this transaction."""
        key = (user.lower(), provider.lower())
        if session.get_bind().dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert

            session.execute(
                insert(_FeeRow)
                .values(user=key[0], provider=key[1], cached_fee="0", total_fee="0",
                        request_count=0, updated_at=time.time())
                .on_conflict_do_nothing(index_elements=["user", "provider"])
            )  # fmt: skip
        # populate_existing: a row of this session's identity map may be stale after a
        # Core update of an earlier write in the same group commit (_add_fee_row)
        row = session.get(_FeeRow, key, with_for_update=True, populate_existing=True)
        if row is None:
            row = _FeeRow(
                user=user.lower(),
                provider=provider.lower(),
                cached_fee="0",
                total_fee="0",
                request_count=0,
                updated_at=time.time(),
            )
            session.add(row)
        return row

    @staticmethod
    def _add(row: _FeeRow, fee: int) -> FeeTotals:
        row.cached_fee = str(int(row.cached_fee) + fee)
        row.total_fee = str(int(row.total_fee) + fee)
        row.request_count = (row.request_count or 0) + 1
        row.updated_at = time.time()
        return FeeTotals(int(row.cached_fee), int(row.total_fee), row.request_count)

    @staticmethod
    def _add_fee_row(session: Session, user: str, provider: str, fee: int) -> FeeTotals:
        """:meth:`_add` in SQLAlchemy Core (no unit of work: the hot write of every request)."""
        key = {"u": user.lower(), "p": provider.lower()}
        if session.get_bind().dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            session.execute(
                pg_insert(_FEES)
                .values(user=key["u"], provider=key["p"], cached_fee="0", total_fee="0",
                        request_count=0, updated_at=time.time())
                .on_conflict_do_nothing(index_elements=["user", "provider"])
            )  # fmt: skip
        row = session.execute(_SELECT_FEES, key).first()
        now = time.time()
        if row is None:
            totals = FeeTotals(fee, fee, 1)
            session.execute(
                insert(_FEES).values(user=key["u"], provider=key["p"], cached_fee=str(fee),
                                     total_fee=str(fee), request_count=1, updated_at=now)
            )  # fmt: skip
            return totals
        totals = FeeTotals(int(row[0]) + fee, int(row[1]) + fee, (row[2] or 0) + 1)
        session.execute(
            _UPDATE_FEES,
            {**key, "c": str(totals.cached_fee), "t": str(totals.total_fee),
             "n": totals.request_count, "at": now},
        )  # fmt: skip
        return totals

    def _add_fee_op(self, user: str, provider: str, fee: int) -> Callable[[Session], FeeTotals]:
        _check_fee(fee)
        return lambda session: self._add_fee_row(session, user, provider, fee)

    def add_fee(self, user: str, provider: str, fee: int) -> FeeTotals:
        """Add one response's fee (neuron, ≥ 0) to the cached and lifetime totals.

        Returns:
            The new :class:`FeeTotals`.

        Raises:
            ValueError: ``fee`` is negative or not an int.
        """
        return self._write_hot(self._exchange_op(user, provider, fee, None))

    async def aadd_fee(self, user: str, provider: str, fee: int) -> FeeTotals:
        """:meth:`add_fee` for async callers: returns once committed, without blocking the event
        loop or a worker thread (the SQLite writer's group commit).

        Raises:
            ValueError: ``fee`` is negative or not an int.
        """
        return await self._awrite_hot(self._exchange_op(user, provider, fee, None))

    def set_cached_fee(self, user: str, provider: str, fee: int) -> None:
        """Overwrite the cached (unsettled) fee, e.g. with the provider's ``/unsettledfee`` value or
        0 after a funding transfer (neuron, ≥ 0)."""
        _check_fee(fee)

        def _op(session: Session):  # type: ignore[no-untyped-def]
            row = self._row(session, user, provider)
            row.cached_fee = str(fee)
            row.updated_at = time.time()

        return self._write(_op)

    def get_totals(self, user: str, provider: str) -> FeeTotals:
        """The counters of (user, provider); zeros when nothing was recorded."""
        with self._sessions() as session:
            row = session.get(_FeeRow, (user.lower(), provider.lower()))
            if row is None:
                return FeeTotals(0, 0, 0)
            return FeeTotals(int(row.cached_fee), int(row.total_fee), row.request_count)

    def get_cached_fee(self, user: str, provider: str) -> int:
        """The cached (unsettled) fee in neuron; 0 when nothing was recorded."""
        return self.get_totals(user, provider).cached_fee

    # -- disputed fees -----------------------------------------------------------------------

    def _disputed_op(
        self, user: str, provider: str, chat_id: str | None, fee: int, reason: str
    ) -> Callable[[Any], DisputedTotals]:
        """The write of :meth:`record_disputed` (see :meth:`_write_hot`), input checked first.

        Raises:
            ValueError: ``fee`` is negative or not an int.
        """
        _check_fee(fee)
        if self._writer is not None:
            key, why = (user.lower(), provider.lower()), str(reason)[:64]
            return lambda conn: DisputedTotals(
                *fee_store_sql.record_disputed(conn, *key, _text_or_none(chat_id), fee, why)
            )

        def _op(session: Session):  # type: ignore[no-untyped-def]
            row = self._row(session, user, provider)
            row.cached_fee = str(int(row.cached_fee) + fee)
            row.updated_at = time.time()
            session.add(
                _DisputedFeeRow(
                    user=user.lower(),
                    provider=provider.lower(),
                    chat_id=chat_id,
                    fee=str(fee),
                    reason=reason[:64],
                    created_at=time.time(),
                )
            )
            session.flush()
            return self._disputed(session, user, provider)

        return _op

    def record_disputed(
        self, user: str, provider: str, chat_id: str | None, fee: int, reason: str
    ) -> DisputedTotals:
        """Record the provider's charge (neuron, ≥ 0) for a response that was refused because it
        did not verify; the fee is added to ``cached_fee`` (it is owed) and to the disputed totals,
        not to ``total_fee`` (module docstring).

        Args:
            user, provider: addresses. chat_id: the refused response's chat id (may be ``None``).
            fee: neuron. reason: the verification reason (e.g. ``response_hash_mismatch``).

        Returns:
            The new :class:`DisputedTotals` of (user, provider).

        Raises:
            ValueError: ``fee`` is negative or not an int.
        """
        return self._write_hot(self._disputed_op(user, provider, chat_id, fee, reason))

    async def arecord_disputed(
        self, user: str, provider: str, chat_id: str | None, fee: int, reason: str
    ) -> DisputedTotals:
        """:meth:`record_disputed` for async callers (returns once committed).

        Raises:
            ValueError: ``fee`` is negative or not an int.
        """
        return await self._awrite_hot(self._disputed_op(user, provider, chat_id, fee, reason))

    @staticmethod
    def _disputed(session: Session, user: str, provider: str) -> DisputedTotals:
        fees = session.scalars(
            select(_DisputedFeeRow.fee).where(
                _DisputedFeeRow.user == user.lower(), _DisputedFeeRow.provider == provider.lower()
            )
        )
        values = [int(f) for f in fees]
        return DisputedTotals(len(values), sum(values))

    def disputed_totals(self, user: str, provider: str) -> DisputedTotals:
        """How many refused responses of (user, provider) the provider billed, and their fees."""
        with self._sessions() as session:
            return self._disputed(session, user, provider)

    # -- verification log --------------------------------------------------------------------

    def _prune_due(self) -> bool:
        """Count one verification insert; True on every :data:`PRUNE_EVERY`-th."""
        with self._inserts_lock:
            self._inserts += 1
            return self._inserts % PRUNE_EVERY == 0

    def _verification_op(
        self, user: str, provider: str, result: VerificationResult
    ) -> Callable[[Session], None]:
        due = self._prune_due()

        def _op(session: Session) -> None:
            session.execute(
                insert(_VERIFICATIONS).values(
                    user=user.lower(), provider=provider.lower(), chat_id=result.chat_id,
                    verified=result.verified, reason=result.reason.value, signer=result.signer,
                    detail=result.detail[:1000], created_at=time.time(),
                )
            )  # fmt: skip
            if due:
                session.flush()
                self._prune(session)

        return _op

    def record_verification(self, user: str, provider: str, result: VerificationResult) -> None:
        """Store one verification result (one commit); every :data:`PRUNE_EVERY` inserts, prune
        the log to the newest ``max_verifications`` rows (in the same transaction)."""
        self._write_hot(self._exchange_op(user, provider, None, result))

    async def arecord_verification(
        self, user: str, provider: str, result: VerificationResult
    ) -> None:
        """:meth:`record_verification` for async callers (returns once committed)."""
        await self._awrite_hot(self._exchange_op(user, provider, None, result))

    def _exchange_op(
        self, user: str, provider: str, fee: int | None, verification: VerificationResult | None
    ) -> Callable[[Any], FeeTotals | None]:
        """The write of one answered request (see :meth:`_write_hot`): its verification (when
        given) logged, then its fee (when not ``None``) added; the op returns the new
        :class:`FeeTotals` or ``None``. The input is checked here, before anything is queued.

        Raises:
            ValueError: ``fee`` is negative or not an int.
        """
        if self._writer is not None:
            return self._sql_exchange_op(user, provider, fee, verification)
        add = self._add_fee_op(user, provider, fee) if fee is not None else None
        log = self._verification_op(user, provider, verification) if verification else None

        def _op(session: Session) -> FeeTotals | None:
            if log is not None:
                log(session)
            return add(session) if add is not None else None

        return _op

    def record_exchange(
        self,
        user: str,
        provider: str,
        *,
        fee: int | None = None,
        verification: VerificationResult | None = None,
    ) -> FeeTotals | None:
        """One answered request in one transaction: its fee (:meth:`add_fee`, when not ``None``)
        and its verification result (:meth:`record_verification`, when given).

        Returns:
            The new :class:`FeeTotals`, or ``None`` when no fee was given.

        Raises:
            ValueError: ``fee`` is negative or not an int (nothing is written).
        """
        return self._write_hot(self._exchange_op(user, provider, fee, verification))

    async def arecord_exchange(
        self,
        user: str,
        provider: str,
        *,
        fee: int | None = None,
        verification: VerificationResult | None = None,
    ) -> FeeTotals | None:
        """:meth:`record_exchange` for async callers (returns once committed; serve's one write
        per answered request).

        Raises:
            ValueError: ``fee`` is negative or not an int (nothing is written).
        """
        return await self._awrite_hot(self._exchange_op(user, provider, fee, verification))

    def _sql_exchange_op(
        self, user: str, provider: str, fee: int | None, verification: VerificationResult | None
    ) -> WriteOp[FeeTotals | None]:
        """:meth:`_exchange_op` as plain SQL on the writer's connection (:mod:`.fee_store_sql`)."""
        if fee is not None:
            _check_fee(fee)
        user, provider = user.lower(), provider.lower()
        log = _verification_values(verification) if verification is not None else None
        keep = self.max_verifications if log is not None and self._prune_due() else None

        def _op(conn: sqlite3.Connection) -> FeeTotals | None:
            if log is not None:
                fee_store_sql.record_verification(conn, user, provider, log, keep)
            if fee is None:
                return None
            return FeeTotals(*fee_store_sql.add_fee(conn, user, provider, fee))

        return _op

    def _oldest_kept_id(self):  # type: ignore[no-untyped-def]
        """SQL scalar: the smallest id among the newest ``max_verifications`` rows."""
        keep = (
            select(_VerificationRow.id)
            .order_by(_VerificationRow.id.desc())
            .limit(self.max_verifications)
        )
        return select(func.min(keep.subquery().c.id)).scalar_subquery()

    def _prune(self, session: Session) -> None:
        session.execute(
            delete(_VerificationRow).where(_VerificationRow.id < self._oldest_kept_id())
        )

    def _prune_verifications(self) -> None:
        """Delete all but the newest ``max_verifications`` verification rows (one statement)."""
        if self._writer is not None:
            keep = self.max_verifications
            self._writer.run(lambda conn: fee_store_sql.prune_verifications(conn, keep))
        else:
            self._session_write(self._prune)

    def recent_verifications(
        self, limit: int = 50, *, provider: str | None = None, user: str | None = None
    ) -> list[VerificationRecord]:
        """The latest verification results, newest first (optionally for one provider and/or one
        user: a store shared by several wallets must be filtered by ``user`` before a record is
        shown to one of them)."""
        # rows beyond the bound that the periodic prune has not deleted yet are not shown
        stmt = (
            select(_VerificationRow)
            .where(_VerificationRow.id >= self._oldest_kept_id())
            .order_by(_VerificationRow.id.desc())
            .limit(limit)
        )
        if provider is not None:
            stmt = stmt.where(_VerificationRow.provider == provider.lower())
        if user is not None:
            stmt = stmt.where(_VerificationRow.user == user.lower())
        with self._sessions() as session:
            return [
                VerificationRecord(
                    r.user,
                    r.provider,
                    r.chat_id,
                    r.verified,
                    VerificationReason(r.reason),
                    r.signer,
                    r.detail,
                    r.created_at,
                )
                for r in session.scalars(stmt)
            ]

    # -- issued API-key ids ------------------------------------------------------------------

    def issued_token_ids(self, user: str, provider: str, generation: int) -> set[int]:
        """Persistent token ids already issued locally for (user, provider) in ``generation``."""
        stmt = select(_IssuedTokenRow.token_id).where(
            _IssuedTokenRow.user == user.lower(),
            _IssuedTokenRow.provider == provider.lower(),
            _IssuedTokenRow.generation == generation,
        )
        with self._sessions() as session:
            return set(session.scalars(stmt))

    def record_issued_token(
        self, user: str, provider: str, generation: int, token_id: int,
        created_at_ms: int, expires_at_ms: int,
    ) -> None:  # fmt: skip
        """Remember that ``token_id`` was issued (idempotent for the same id and generation)."""

        def _op(session: Session):  # type: ignore[no-untyped-def]
            exists = session.scalar(
                select(_IssuedTokenRow.id).where(
                    _IssuedTokenRow.user == user.lower(),
                    _IssuedTokenRow.provider == provider.lower(),
                    _IssuedTokenRow.generation == generation,
                    _IssuedTokenRow.token_id == token_id,
                )
            )
            if exists is None:
                session.add(
                    _IssuedTokenRow(
                        user=user.lower(), provider=provider.lower(), generation=generation,
                        token_id=token_id, created_at_ms=created_at_ms, expires_at_ms=expires_at_ms,
                    )
                )  # fmt: skip

        return self._write(_op)

    # -- async image jobs --------------------------------------------------------------------

    def record_async_job(self, user: str, provider: str, job_id: str, images: int) -> bool:
        """Remember a job accepted by the provider (``pending``, nothing billed yet).

        Args:
            user, provider: addresses. job_id: the provider's job id (1–200 characters).
            images: requested image count ``n`` (≥ 0), billed as ``n × outputPrice`` on completion.

        Returns:
            True when recorded now; False when the job was already known (left unchanged).

        Raises:
            ValueError: empty or over-long ``job_id``, or ``images`` not a non-negative int.
        """
        if not job_id or len(job_id) > 200:
            raise ValueError("job_id must be 1 to 200 characters")
        if isinstance(images, bool) or not isinstance(images, int) or images < 0:
            raise ValueError(f"images must be a non-negative int, got {images!r}")
        key = (user.lower(), provider.lower(), job_id)
        now = time.time()

        def _op(session: Session):  # type: ignore[no-untyped-def]
            if session.get_bind().dialect.name == "postgresql":
                from sqlalchemy.dialects.postgresql import insert

                done = session.execute(
                    insert(_AsyncJobRow)
                    .values(user=key[0], provider=key[1], job_id=job_id, images=images,
                            status=AsyncJobStatus.PENDING.value, fee="0", created_at=now,
                            updated_at=now)
                    .on_conflict_do_nothing(index_elements=["user", "provider", "job_id"])
                    .returning(_AsyncJobRow.job_id)
                )  # fmt: skip
                return done.scalar_one_or_none() is not None
            if session.get(_AsyncJobRow, key) is not None:
                return False
            session.add(
                _AsyncJobRow(user=key[0], provider=key[1], job_id=job_id, images=images,
                             status=AsyncJobStatus.PENDING.value, fee="0", created_at=now,
                             updated_at=now)
            )  # fmt: skip
            return True

        return self._write(_op)

    def get_async_job(self, user: str, provider: str, job_id: str) -> AsyncJob | None:
        """The recorded job, or None when this store never saw it."""
        with self._sessions() as session:
            row = session.get(_AsyncJobRow, (user.lower(), provider.lower(), job_id))
            return _async_job(row) if row is not None else None

    def async_jobs(
        self, user: str, provider: str, status: AsyncJobStatus | None = None
    ) -> list[AsyncJob]:
        """The recorded jobs of (user, provider), oldest first, optionally of one ``status``."""
        stmt = (
            select(_AsyncJobRow)
            .where(_AsyncJobRow.user == user.lower(), _AsyncJobRow.provider == provider.lower())
            .order_by(_AsyncJobRow.created_at)
        )
        if status is not None:
            stmt = stmt.where(_AsyncJobRow.status == AsyncJobStatus(status).value)
        with self._sessions() as session:
            return [_async_job(row) for row in session.scalars(stmt)]

    def bill_async_job(self, user: str, provider: str, job_id: str, fee: int) -> FeeTotals | None:
        """Bill a completed job exactly once: if it is ``pending``, mark it ``billed`` with ``fee``
        and add ``fee`` (neuron) to the fee totals, in one transaction (row locked).

        Returns:
            The new :class:`FeeTotals`, or None (nothing changed) when the job is unknown, already
            billed or failed.

        Raises:
            ValueError: ``fee`` is negative or not an int.
        """
        _check_fee(fee)

        def _op(session: Session):  # type: ignore[no-untyped-def]
            row = session.get(
                _AsyncJobRow, (user.lower(), provider.lower(), job_id), with_for_update=True
            )
            if row is None or row.status != AsyncJobStatus.PENDING.value:
                return None
            row.status = AsyncJobStatus.BILLED.value
            row.fee = str(fee)
            row.updated_at = time.time()
            return self._add(self._row(session, user, provider), fee)

        return self._write(_op)

    def fail_async_job(self, user: str, provider: str, job_id: str) -> bool:
        """Mark a ``pending`` job ``failed`` (it is never billed).

        Returns:
            True when this call changed it; False when unknown, billed or already failed.
        """

        def _op(session: Session):  # type: ignore[no-untyped-def]
            row = session.get(
                _AsyncJobRow, (user.lower(), provider.lower(), job_id), with_for_update=True
            )
            if row is None or row.status != AsyncJobStatus.PENDING.value:
                return False
            row.status = AsyncJobStatus.FAILED.value
            row.updated_at = time.time()
            return True

        return self._write(_op)
