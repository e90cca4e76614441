"""Billing of async image jobs (``provider-gateway.md`` B2, B9).

An async generation or edit is admitted like a synchronous one (B3, B4, B6) and gets its
``pending`` zero-fee request row before forwarding. When the backend accepts it (202 with
``jobId``) the job is recorded here; the fee (``n × outputPrice``, B9, by
:func:`broker.wire.fees.image_counts`) is recorded only when the backend reports the job
``completed``, exactly once, whether the gateway learns it from the user's poll or from its own
watcher. A job that fails, or that the backend no longer knows (404), is never charged (B9: failed
requests are never charged). Records are in the database, so a restarted gateway resumes watching.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select, update

from broker.provider.billing import FeeLedger
from broker.provider.db import AsyncJobRecord, AsyncJobStatus, Database
from broker.wire.fees import Fee, image_counts

__all__ = ["AsyncJobTracker", "JobPoll"]

logger = logging.getLogger(__name__)

#: ``(status_code, json body or None, Retry-After seconds or None)`` of one backend job poll.
JobPoll = tuple[int, Any, float | None]


class AsyncJobTracker:
    """Async jobs accepted by the backend, and their billing on completion.

    Args:
        db: the gateway database. ledger: the fee ledger. output_price: neuron per image.
    """

    def __init__(self, db: Database, ledger: FeeLedger, output_price: int) -> None:
        self.db = db
        self.ledger = ledger
        self.output_price = output_price

    def register(self, job_id: str, request_hash: str | None, user: str, images: int) -> None:
        """Record an accepted job (``request_hash`` None: an unbilled, whitelisted user)."""
        with self.db.session.begin() as s:
            s.add(
                AsyncJobRecord(
                    job_id=job_id,
                    request_hash=request_hash,
                    user_address=user,
                    images=max(images, 1),
                )
            )

    def owner(self, job_id: str) -> str | None:
        """The user who created ``job_id`` through this gateway, or None."""
        with self.db.session() as s:
            rec = s.get(AsyncJobRecord, job_id)
            return rec.user_address if rec is not None else None

    def pending(self) -> list[str]:
        """Ids of jobs not yet finished (to watch after a restart)."""
        with self.db.session() as s:
            return list(
                s.scalars(
                    select(AsyncJobRecord.job_id).where(
                        AsyncJobRecord.status == AsyncJobStatus.PENDING
                    )
                )
            )

    def _pending(self, job_id: str) -> AsyncJobRecord | None:
        """The record of ``job_id`` while it is pending, else None."""
        with self.db.session() as s:
            rec = s.get(AsyncJobRecord, job_id)
            return rec if rec is not None and rec.status == AsyncJobStatus.PENDING else None

    def _close(self, job_id: str, status: str) -> AsyncJobRecord | None:
        """Move a pending job to ``status``; returns its record when this call did it."""
        with self.db.session.begin() as s:
            moved = s.execute(
                update(AsyncJobRecord)
                .where(
                    AsyncJobRecord.job_id == job_id, AsyncJobRecord.status == AsyncJobStatus.PENDING
                )
                .values(status=status)
            ).rowcount
            return s.get(AsyncJobRecord, job_id) if moved == 1 else None

    def observe(self, job_id: str, status_code: int, body: Any) -> str | None:
        """Apply one backend answer about ``job_id``.

        ``completed`` bills ``images × output_price`` neuron (once: later calls do nothing);
        ``failed`` or HTTP 404 marks the request failed (never charged); anything else (pending,
        running, transient errors) changes nothing. The request row is written before the job's
        status (each its own commit): a crash between them leaves the job pending, and the
        ledger moves a ``pending`` row only, so observing it again neither bills twice nor
        drops the fee.

        Returns:
            ``"billed"``, ``"failed"`` or None (nothing changed).
        """
        status = body.get("status") if isinstance(body, dict) else None
        completed = status_code == 200 and status == "completed"
        failed = status_code == 404 or (status_code == 200 and status == "failed")
        if not (completed or failed):
            return None
        rec = self._pending(job_id)
        if rec is None:
            return None
        # the fee first, then the job's status: a crash between the two commits leaves the job
        # pending, observed again after a restart, and the ledger moves a request row once
        if rec.request_hash is not None:
            if completed:
                fee = Fee.of(image_counts(rec.images), 0, self.output_price)
                self.ledger.bill(rec.request_hash, fee)
            else:
                self.ledger.fail(rec.request_hash)
        moved = self._close(job_id, AsyncJobStatus.BILLED if completed else AsyncJobStatus.FAILED)
        if moved is None:
            return None
        return "billed" if completed else "failed"

    async def watch(
        self,
        job_id: str,
        poll: Callable[[], Awaitable[JobPoll]],
        *,
        timeout: float = 900.0,
        min_interval: float = 0.2,
        max_interval: float = 5.0,
    ) -> str | None:
        """Poll the backend until ``job_id`` finishes (or ``timeout`` seconds pass) and bill it.

        ``poll()`` returns a :data:`JobPoll`; its ``Retry-After`` sets the next delay, clamped to
        ``[min_interval, max_interval]`` seconds. Errors of ``poll`` are logged and retried.

        Returns:
            What :meth:`observe` returned for the final answer, or None on timeout.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        delay = min_interval
        while loop.time() < deadline:
            try:
                code, body, retry_after = await poll()
            except Exception as exc:  # noqa: BLE001 - transient backend trouble: retry
                logger.warning("polling async job %s failed: %s", job_id, type(exc).__name__)
            else:
                outcome = await asyncio.to_thread(self.observe, job_id, code, body)
                if outcome is not None or self._finished(job_id):
                    return outcome
                delay = retry_after if retry_after is not None else delay
            await asyncio.sleep(min(max(delay, min_interval), max_interval))
        return None

    def _finished(self, job_id: str) -> bool:
        with self.db.session() as s:
            rec = s.get(AsyncJobRecord, job_id)
            return rec is None or rec.status != AsyncJobStatus.PENDING
