"""``serve``'s own durable state (SQLAlchemy; SQLite by default at ``<ZG_HOME>/serve.db``, or any
URL in ``ServeSettings.state_url``): what the Router-style async jobs and the Pixazo-compatible
requests need beyond the fee store, so that a restarted ``serve`` answers the same polls the same
way.

Tables:

``serve_router_jobs``
    one row per async image job submitted through ``/v1/async/images/generations``: the
    submission's ``ZG-Res-Key`` (the trace's ``request_id``), whether ``verify_tee`` was asked, and
    the submission time (the poll's ``createdAt`` when the provider gives none).
``serve_pixazo_requests``
    one row per Pixazo-compatible request: the provider's job id, Pixazo status, error, timestamps,
    the webhook URL (if any) and whether the final status was delivered, the request options, and
    the finished status body (JSON) once final.
``serve_media``
    generated images kept for ``output.media_url`` (bytes, MIME type, expiry); ids are 128-bit
    random tokens. Expired rows are deleted when new media is stored.

Every row is keyed by the serving user and provider as well: a store shared by several wallets never
shows one user another's requests.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Boolean,
    Float,
    Integer,
    LargeBinary,
    String,
    Text,
    create_engine,
    delete,
    event,
    select,
    update,
)
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

from broker.proxy.errors import ProxyConfigError

__all__ = [
    "MediaItem",
    "PixazoRecord",
    "RouterJob",
    "ServeStateStore",
    "default_state_url",
]


def default_state_url() -> str:
    """``sqlite:///<broker_home()>/serve.db`` (``$ZG_HOME``, default ``~/.0g-broker``)."""
    from broker.config.settings import broker_home

    return f"sqlite:///{broker_home() / 'serve.db'}"


def _safe_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "(malformed URL)"


class _Base(DeclarativeBase):
    pass


class _RouterJobRow(_Base):
    __tablename__ = "serve_router_jobs"

    user: Mapped[str] = mapped_column(String(42), primary_key=True)
    provider: Mapped[str] = mapped_column(String(42), primary_key=True)
    job_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    verify_tee: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[float] = mapped_column(Float)


class _PixazoRow(_Base):
    __tablename__ = "serve_pixazo_requests"

    request_id: Mapped[str] = mapped_column(String(120), primary_key=True)
    user: Mapped[str] = mapped_column(String(42), index=True)
    provider: Mapped[str] = mapped_column(String(42))
    model_id: Mapped[str] = mapped_column(String(60))
    job_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    updated_at: Mapped[float] = mapped_column(Float)
    completed_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    webhook_url: Mapped[str | None] = mapped_column(Text, nullable=True)
    webhook_delivered: Mapped[bool] = mapped_column(Boolean, default=False)
    options: Mapped[str] = mapped_column(Text, default="{}")
    final_body: Mapped[str | None] = mapped_column(Text, nullable=True)


class _MediaRow(_Base):
    __tablename__ = "serve_media"

    media_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user: Mapped[str] = mapped_column(String(42))
    request_id: Mapped[str] = mapped_column(String(120), index=True)
    content_type: Mapped[str] = mapped_column(String(40))
    data: Mapped[bytes] = mapped_column(LargeBinary)
    expires_at: Mapped[float] = mapped_column(Float, index=True)
    size: Mapped[int] = mapped_column(Integer)


@dataclass(frozen=True, slots=True)
class RouterJob:
    """A Router-style async job as submitted: ``request_id`` (the 202's ``ZG-Res-Key``, may be
    ``None``), ``verify_tee`` asked, ``created_at`` Unix seconds."""

    job_id: str
    request_id: str | None
    verify_tee: bool
    created_at: float


@dataclass(frozen=True, slots=True)
class PixazoRecord:
    """One Pixazo-compatible request (times are Unix seconds; ``options``: the request's fields
    that shape the answer; ``final_body``: the status body once final)."""

    request_id: str
    provider: str
    model_id: str
    job_id: str | None
    status: str
    error: str | None
    created_at: float
    updated_at: float
    completed_at: float | None
    webhook_url: str | None
    webhook_delivered: bool
    options: dict[str, Any]
    final_body: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class MediaItem:
    """A stored image: bytes and MIME type."""

    media_id: str
    content_type: str
    data: bytes


def _pixazo(row: _PixazoRow) -> PixazoRecord:
    return PixazoRecord(
        row.request_id,
        row.provider,
        row.model_id,
        row.job_id,
        row.status,
        row.error,
        row.created_at,
        row.updated_at,
        row.completed_at,
        row.webhook_url,
        row.webhook_delivered,
        json.loads(row.options or "{}"),
        json.loads(row.final_body) if row.final_body else None,
    )


class ServeStateStore:
    """The store (thread-safe; blocking: call from a worker thread in async code).

    Args:
        url: SQLAlchemy URL (default :func:`default_state_url`).

    Raises:
        ProxyConfigError: the database cannot be opened or created (the message names the URL
            without its password).
    """

    def __init__(self, url: str | None = None) -> None:
        self.url = url or default_state_url()
        self._lock = threading.RLock()
        try:
            self._engine = self._make_engine(self.url)
            _Base.metadata.create_all(self._engine)
        except (SQLAlchemyError, OSError, ValueError, ImportError) as exc:
            reason = str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]
            raise ProxyConfigError(
                f"serve's state database {_safe_url(self.url)} cannot be opened ({reason}); "
                "set ZG_SERVE_STATE_URL to a writable location"
            ) from None
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)

    @staticmethod
    def _make_engine(url: str) -> Engine:
        if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
            Path(url[len("sqlite:///") :]).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, **({} if url.startswith("sqlite") else {"pool_pre_ping": True}))
        if engine.dialect.name == "sqlite":

            @event.listens_for(engine, "connect")
            def _connect(dbapi_connection, _record):  # type: ignore[no-untyped-def]
                dbapi_connection.execute("PRAGMA busy_timeout = 10000")

        return engine

    def close(self) -> None:
        """Release the connection pool."""
        self._engine.dispose()

    # -- Router-style async jobs ---------------------------------------------------------------

    def record_router_job(self, user: str, provider: str, job: RouterJob) -> None:
        """Remember a submitted job (a second submission of the same id keeps the first row)."""
        with self._lock, self._sessions.begin() as session:
            key = (user.lower(), provider.lower(), job.job_id)
            if session.get(_RouterJobRow, key) is None:
                session.add(
                    _RouterJobRow(
                        user=key[0],
                        provider=key[1],
                        job_id=job.job_id,
                        request_id=job.request_id,
                        verify_tee=job.verify_tee,
                        created_at=job.created_at,
                    )
                )

    def get_router_job(self, user: str, provider: str, job_id: str) -> RouterJob | None:
        """The job as submitted by ``user`` to ``provider``, or ``None``."""
        with self._lock, self._sessions() as session:
            row = session.get(_RouterJobRow, (user.lower(), provider.lower(), job_id))
            if row is None:
                return None
            return RouterJob(row.job_id, row.request_id, row.verify_tee, row.created_at)

    # -- Pixazo-compatible requests ------------------------------------------------------------

    def create_pixazo(
        self,
        user: str,
        provider: str,
        request_id: str,
        model_id: str,
        job_id: str | None,
        status: str,
        *,
        webhook_url: str | None,
        options: dict[str, Any],
        error: str | None = None,
    ) -> PixazoRecord:
        """Insert a new request row and return it."""
        now = time.time()
        row = _PixazoRow(
            request_id=request_id,
            user=user.lower(),
            provider=provider.lower(),
            model_id=model_id,
            job_id=job_id,
            status=status,
            error=error,
            created_at=now,
            updated_at=now,
            completed_at=None,
            webhook_url=webhook_url,
            webhook_delivered=False,
            options=json.dumps(options),
            final_body=None,
        )
        with self._lock, self._sessions.begin() as session:
            session.add(row)
        return _pixazo(row)

    def get_pixazo(self, user: str, request_id: str) -> PixazoRecord | None:
        """``user``'s request ``request_id``, or ``None`` (also for another user's id)."""
        with self._lock, self._sessions() as session:
            row = session.get(_PixazoRow, request_id)
            if row is None or row.user != user.lower():
                return None
            return _pixazo(row)

    def update_pixazo(
        self,
        request_id: str,
        *,
        status: str,
        error: str | None = None,
        final_body: dict[str, Any] | None = None,
    ) -> PixazoRecord | None:
        """Move a request that is not final yet to ``status`` (``final_body`` given: it becomes
        final, ``completed_at`` set). A final request is never changed.

        Returns:
            The record after the call (unchanged when it already was final), or ``None``.
        """
        now = time.time()
        with self._lock, self._sessions.begin() as session:
            row = session.get(_PixazoRow, request_id)
            if row is None:
                return None
            if row.final_body is None:
                if row.status != status or final_body is not None:
                    row.updated_at = now
                row.status, row.error = status, error
                if final_body is not None:
                    row.completed_at = now
                    row.final_body = json.dumps(final_body)
            return _pixazo(row)

    def mark_webhook_delivered(self, request_id: str) -> bool:
        """Mark the final status as delivered; True only for the first caller (one delivery)."""
        with self._lock, self._sessions.begin() as session:
            result = session.execute(
                update(_PixazoRow)
                .where(_PixazoRow.request_id == request_id, _PixazoRow.webhook_delivered.is_(False))
                .values(webhook_delivered=True)
            )
            return result.rowcount == 1

    def pending_webhooks(self, user: str, provider: str) -> list[str]:
        """Ids of ``user``'s requests to ``provider`` with a webhook whose final status was not
        delivered yet (resumed at start-up)."""
        stmt = select(_PixazoRow.request_id).where(
            _PixazoRow.user == user.lower(),
            _PixazoRow.provider == provider.lower(),
            _PixazoRow.webhook_url.is_not(None),
            _PixazoRow.webhook_delivered.is_(False),
        )
        with self._lock, self._sessions() as session:
            return list(session.scalars(stmt))

    # -- media ---------------------------------------------------------------------------------

    def put_media(
        self, user: str, request_id: str, media_id: str, content_type: str, data: bytes, ttl: float
    ) -> None:
        """Store one image for ``ttl`` seconds (and delete expired ones)."""
        now = time.time()
        with self._lock, self._sessions.begin() as session:
            session.execute(delete(_MediaRow).where(_MediaRow.expires_at < now))
            session.add(
                _MediaRow(
                    media_id=media_id,
                    user=user.lower(),
                    request_id=request_id,
                    content_type=content_type,
                    data=data,
                    expires_at=now + ttl,
                    size=len(data),
                )
            )

    def get_media(self, user: str, media_id: str) -> MediaItem | None:
        """``user``'s unexpired image ``media_id``, or ``None``."""
        with self._lock, self._sessions() as session:
            row = session.get(_MediaRow, media_id)
            if row is None or row.user != user.lower() or row.expires_at < time.time():
                return None
            return MediaItem(row.media_id, row.content_type, row.data)
