"""The gateway database (SQLAlchemy 2; SQLite by default, PostgreSQL supported).

Tables (``provider-gateway.md`` B9, with our crash-safety bookkeeping):

* ``requests`` — one row per billable request, written **before** forwarding (fees 0, status
  ``pending``) and given its fee **before** the response is released (status ``unsettled``). Then
  ``settling`` (``batch_id`` set) → ``settled`` / back to ``unsettled`` (not covered, or refused by
  the contract: NO_TEE_SIGNER keeps the fees, see :mod:`broker.provider.settlement`), or ``failed``
  (backend error, never charged). ``forfeited`` is reserved and never written. Fees are decimal
  strings in neuron (exact on every backend; SQLite's NUMERIC is a float).
* ``settlement_batches`` — one signed ``TEESettlement`` per user: nonce, total fee, requests hash,
  signature, the block number before sending, tx hash and per-item result.
* ``chat_signatures`` — response signatures (B7) keyed by the lower-cased chat id, with expiry; kept
  in the database so a restart does not lose them (fixes D5).
* ``async_jobs`` — async image jobs accepted by the backend (B2): job id → the billed request row,
  its user and image count, and whether the job was billed (on completion) or failed.
"""

from __future__ import annotations

import threading
import time
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    create_engine,
    event,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from broker.provider.outstanding import OutstandingFees
from broker.sqlite_writer import SQLiteWriter, WriteOp

__all__ = [
    "SQLITE_POOL_SIZE",
    "AsyncJobRecord",
    "AsyncJobStatus",
    "Base",
    "BatchStatus",
    "ChatSignature",
    "Database",
    "RequestRecord",
    "RequestStatus",
    "SettlementBatch",
    "open_database",
]


_T = TypeVar("_T")

#: Pooled SQLite connections kept open (AnyIO's default worker-thread limit is 40).
SQLITE_POOL_SIZE = 40


class RequestStatus:
    """Values of ``requests.status``."""

    PENDING = "pending"  # forwarded, fee not yet known
    UNSETTLED = "unsettled"  # billed, waiting for settlement
    SETTLING = "settling"  # part of an outstanding batch
    SETTLED = "settled"  # paid on chain
    FORFEITED = "forfeited"  # reserved; never written (NO_TEE_SIGNER keeps the fees)
    FAILED = "failed"  # backend failure: never charged
    OUTSTANDING = (PENDING, UNSETTLED, SETTLING)


class BatchStatus:
    """Values of ``settlement_batches.status``."""

    PREPARED = "prepared"  # signed and stored; maybe sent, maybe not
    CONFIRMED = "confirmed"  # nonce consumed on chain, result recorded
    REJECTED = "rejected"  # the contract refused the item (nonce not consumed)


class AsyncJobStatus:
    """Values of ``async_jobs.status``."""

    PENDING = "pending"  # accepted by the backend, not finished
    BILLED = "billed"  # completed; its request row got the fee (exactly once)
    FAILED = "failed"  # failed or vanished on the backend; never charged


class Base(DeclarativeBase):
    """Declarative base of the gateway tables."""


class RequestRecord(Base):
    """A billable request (B9). Fees in neuron as decimal strings."""

    __tablename__ = "requests"

    request_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_address: Mapped[str] = mapped_column(String(42), index=True)
    service_type: Mapped[str] = mapped_column(String(32))
    model: Mapped[str] = mapped_column(String(256), default="")
    input_count: Mapped[int] = mapped_column(BigInteger, default=0)
    output_count: Mapped[int] = mapped_column(BigInteger, default=0)
    input_fee: Mapped[str] = mapped_column(String(80), default="0")
    output_fee: Mapped[str] = mapped_column(String(80), default="0")
    fee: Mapped[str] = mapped_column(String(80), default="0")
    status: Mapped[str] = mapped_column(String(16), default=RequestStatus.PENDING, index=True)
    batch_id: Mapped[int | None] = mapped_column(ForeignKey("settlement_batches.id"), nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=time.time)
    updated_at: Mapped[float] = mapped_column(Float, default=time.time, onupdate=time.time)

    __table_args__ = (
        Index("ix_requests_user_status", "user_address", "status"),
        # covers the per-request unsettled-fee sum (no table lookups)
        Index("ix_requests_user_status_fee", "user_address", "status", "fee"),
    )


class SettlementBatch(Base):
    """One signed ``TEESettlementData`` item for one user (B10.3)."""

    __tablename__ = "settlement_batches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_address: Mapped[str] = mapped_column(String(42), index=True)
    nonce: Mapped[str] = mapped_column(String(80))
    total_fee: Mapped[str] = mapped_column(String(80))
    requests_hash: Mapped[str] = mapped_column(String(66))
    signature: Mapped[str] = mapped_column(String(132))
    from_block: Mapped[int] = mapped_column(BigInteger, default=0)
    tx_hash: Mapped[str | None] = mapped_column(String(66), nullable=True)
    status: Mapped[str] = mapped_column(String(16), default=BatchStatus.PREPARED, index=True)
    result_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    unsettled_amount: Mapped[str | None] = mapped_column(String(80), nullable=True)
    created_at: Mapped[float] = mapped_column(Float, default=time.time)


class ChatSignature(Base):
    """A response signature (B7)."""

    __tablename__ = "chat_signatures"

    chat_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    signature: Mapped[str] = mapped_column(String(132))
    expires_at: Mapped[float] = mapped_column(Float, index=True)


class AsyncJobRecord(Base):
    """An async image job (B2) and the request row it bills on completion."""

    __tablename__ = "async_jobs"

    job_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    request_hash: Mapped[str | None] = mapped_column(String(64), nullable=True)
    user_address: Mapped[str] = mapped_column(String(42), index=True)
    images: Mapped[int] = mapped_column(Integer, default=1)
    status: Mapped[str] = mapped_column(String(16), default=AsyncJobStatus.PENDING, index=True)
    created_at: Mapped[float] = mapped_column(Float, default=time.time)


class Database:
    """An engine plus a session factory; on a SQLite file also the per-request write path.

    Args:
        url: SQLAlchemy URL (``sqlite:///path.db``, ``postgresql+psycopg://...``).
        engine_kwargs: passed to :func:`sqlalchemy.create_engine` (server databases default to
            ``pool_pre_ping=True``).

    Attributes:
        outstanding: per-user outstanding fees kept in memory
            (:class:`~broker.provider.outstanding.OutstandingFees`) on a SQLite file, else
            ``None`` (summed in the database on every request).
    """

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        if not url.startswith("sqlite"):
            # a server database may restart under us: test pooled connections before use
            engine_kwargs.setdefault("pool_pre_ping", True)
        elif ":memory:" not in url and url != "sqlite://":
            # one pooled connection per worker thread that may hold one at once (the request
            # handlers' thread hops): no connect/PRAGMA/close churn under load
            engine_kwargs.setdefault("pool_size", SQLITE_POOL_SIZE)
            engine_kwargs.setdefault("max_overflow", SQLITE_POOL_SIZE)
        self.engine: Engine = create_engine(url, **engine_kwargs)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        Base.metadata.create_all(self.engine)
        for index in RequestRecord.__table__.indexes:  # indexes added after a table existed
            index.create(self.engine, checkfirst=True)
        self.session = sessionmaker(self.engine, expire_on_commit=False)
        if self.engine.dialect.name == "sqlite":
            event.listen(self.session, "after_flush", _note_settlement_write)
            event.listen(self.session, "after_commit", self._sync_settlement_write)
        database = self.engine.url.database
        self._sqlite_path = (
            database
            if self.engine.dialect.name == "sqlite" and database and database != ":memory:"
            else None
        )
        self.outstanding: OutstandingFees | None = (
            OutstandingFees() if self._sqlite_path is not None else None
        )
        self._writer: SQLiteWriter | None = None
        self._writer_lock = threading.Lock()

    @property
    def writer(self) -> SQLiteWriter | None:
        """The group-commit writer of a SQLite file (:mod:`broker.sqlite_writer`; started
        on first use), or ``None`` (PostgreSQL, in-memory SQLite): then write with the engine."""
        if self._sqlite_path is None:
            return None
        writer = self._writer
        if writer is None:
            with self._writer_lock:
                if self._writer is None:
                    self._writer = SQLiteWriter(self._sqlite_path, name="gateway-db-writer")
                writer = self._writer
        return writer

    def __repr__(self) -> str:
        return f"Database({self.engine.url.render_as_string(hide_password=True)!r})"

    def _sync_settlement_write(self, session: Any) -> None:
        """After a commit that wrote a settlement batch, checkpoint the WAL (which fsyncs it), so
        that a signed batch is on disk before its transaction can be sent: with
        ``synchronous=NORMAL`` an ordinary commit is durable against a process crash but not
        against a power loss until the next checkpoint."""
        if session.info.pop("settlement_write", False):
            with self.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")

    def write(self, op: WriteOp[_T]) -> _T:
        """Run one write op (:data:`~broker.sqlite_writer.WriteOp`) and return its result
        once committed: through :attr:`writer` on a SQLite file (``op`` gets the writer's
        ``sqlite3`` connection), else in an engine transaction (``op`` gets a SQLAlchemy
        connection). Exceptions of ``op`` or of the commit propagate; a failed op writes nothing.
        """
        writer = self.writer
        if writer is not None:
            return writer.run(op)
        with self.engine.begin() as conn:
            return op(conn)

    def dispose(self) -> None:
        """Stop the writer thread (after the writes already queued) and close every pooled
        connection. The object stays usable (a later write starts a new writer)."""
        with self._writer_lock:
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        self.engine.dispose()


def _note_settlement_write(session: Any, _ctx: Any) -> None:
    if any(isinstance(o, SettlementBatch) for o in (*session.new, *session.dirty)):
        session.info["settlement_write"] = True


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # WAL + synchronous=NORMAL: a commit is in the WAL (the OS's page cache) before it returns, so
    # it survives kill -9 of the process; a power loss or OS crash can lose the commits since the
    # last checkpoint (never corrupts). Settlement batches are checkpointed right after their
    # commit (Database._sync_settlement_write), before their transaction is sent.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def open_database(url: str) -> Database:
    """Open (and create the tables of) the gateway database at ``url``."""
    return Database(url)
