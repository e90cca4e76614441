"""Async image jobs: a registry with states pending → running → completed | failed, result storage
with a TTL, and the webhook POST sent when a job finishes.

Wire shape (provider-gateway.md B2, user-broker.md 10.1): creation answers 202 with
``{"id", "jobId", "object": "image.generation.job", "status": "pending", "created"}``; polling
returns the same fields plus, when completed, ``data`` = the synchronous images response (so
``body.data.data`` is the image list, as the SDK's job poller reads it) or, when failed, ``error``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from broker.wire.webhook import (
    PinnedWebhookTarget,
    WebhookURLError,
    check_webhook_url,
    pinned_webhook_target,
)
from broker.worker.errors import InvalidImageRequestError, JobNotFoundError

__all__ = ["ImageJob", "JobRegistry", "JobStatus", "WebhookNotifier"]

logger = logging.getLogger(__name__)

JobStatus = Literal["pending", "running", "completed", "failed"]


@dataclass
class ImageJob:
    """One async job.

    Attributes:
        id: ``"imgjob_<24 hex>"``; created / completed_at: unix seconds.
        status: ``pending``, ``running``, ``completed`` or ``failed``.
        result: the images response body (dict) once completed; error: message once failed.
        webhook_url: where to POST the final job body, if any.
    """

    id: str
    created: int
    status: JobStatus = "pending"
    webhook_url: str | None = None
    result: dict[str, Any] | None = None
    error: str | None = None
    completed_at: int | None = None
    finished_monotonic: float | None = field(default=None, repr=False)

    @property
    def done(self) -> bool:
        """Whether the job reached ``completed`` or ``failed``."""
        return self.status in ("completed", "failed")

    def to_dict(self) -> dict[str, Any]:
        """The job body returned by ``GET /v1/async/jobs/{id}`` and posted to the webhook."""
        body: dict[str, Any] = {
            "id": self.id,
            "jobId": self.id,
            "object": "image.generation.job",
            "status": self.status,
            "created": self.created,
        }
        if self.completed_at is not None:
            body["completed_at"] = self.completed_at
        if self.result is not None:
            body["data"] = self.result
        if self.error is not None:
            body["error"] = {"message": self.error, "type": "server_error", "code": "job_failed"}
        return body


class JobRegistry:
    """Thread-safe registry of async jobs; finished jobs are forgotten ``ttl_seconds`` after they
    finish, and the oldest finished ones when more than ``max_jobs`` are held."""

    def __init__(self, ttl_seconds: float = 3600.0, max_jobs: int = 10_000):
        self._ttl = ttl_seconds
        self._max = max_jobs
        self._jobs: dict[str, ImageJob] = {}
        self._lock = threading.Lock()

    def create(self, webhook_url: str | None = None) -> ImageJob:
        """Register a new ``pending`` job and return it."""
        job = ImageJob(
            id=f"imgjob_{secrets.token_hex(12)}", created=int(time.time()), webhook_url=webhook_url
        )
        with self._lock:
            self._prune()
            self._jobs[job.id] = job
        return job

    def get(self, job_id: str) -> ImageJob:
        """The job with this id.

        Raises:
            JobNotFoundError: unknown or expired id.
        """
        with self._lock:
            self._prune()
            job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFoundError(f"no image job {job_id!r} (unknown or expired)")
        return job

    def discard(self, job_id: str) -> None:
        """Forget a job (used when it could not be queued)."""
        with self._lock:
            self._jobs.pop(job_id, None)

    def mark_running(self, job_id: str) -> None:
        """``pending`` → ``running`` (no-op for unknown ids)."""
        with self._lock:
            job = self._jobs.get(job_id)
            if job is not None and job.status == "pending":
                job.status = "running"

    def complete(self, job_id: str, result: dict[str, Any]) -> ImageJob | None:
        """Mark completed with the images response body; returns the job (``None`` if gone)."""
        return self._finish(job_id, "completed", result=result)

    def fail(self, job_id: str, message: str) -> ImageJob | None:
        """Mark failed with an error message; returns the job (``None`` if gone)."""
        return self._finish(job_id, "failed", error=message)

    def __len__(self) -> int:
        with self._lock:
            return len(self._jobs)

    def _finish(self, job_id: str, status: JobStatus, **fields: Any) -> ImageJob | None:
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None:
                return None
            job.status = status
            job.result = fields.get("result")
            job.error = fields.get("error")
            job.completed_at = int(time.time())
            job.finished_monotonic = time.monotonic()
            return job

    def _prune(self) -> None:
        now = time.monotonic()
        finished = [j for j in self._jobs.values() if j.finished_monotonic is not None]
        for job in finished:
            if now - job.finished_monotonic >= self._ttl:
                del self._jobs[job.id]
        excess = len(self._jobs) - self._max
        if excess > 0:
            finished = sorted(
                (j for j in self._jobs.values() if j.finished_monotonic is not None),
                key=lambda j: j.finished_monotonic,
            )
            for job in finished[:excess]:
                del self._jobs[job.id]


class WebhookNotifier:
    """POSTs a finished job's body (JSON) to its ``webhook_url`` with bounded retries, only to
    public addresses unless the operator allows private ones (server-side request forgery guard,
    rule in :mod:`broker.wire.webhook`).

    At submission :meth:`check_url` refuses a URL that is malformed or names a non-public address
    (HTTP 400). At delivery the host is resolved again (DNS may have changed), every address is
    checked, and the POST goes to the checked address (``Host`` and TLS server name kept), so a
    second DNS answer cannot redirect it. Redirects are not followed (a 3xx is a failed attempt).

    A delivery succeeds on any 2xx answer. Failures (connection errors, timeouts, non-2xx) are
    retried up to ``attempts`` times in total with exponential backoff (``backoff_seconds`` × 2^i);
    a refused target is not retried. The last failure is logged, never raised.

    Args:
        client: a shared ``httpx.AsyncClient``.
        attempts: total attempts (>= 1); timeout_seconds: per attempt (connect, read, write and
            pool, seconds).
        allow_private: also deliver to loopback, private and link-local addresses
            (``ZG_WORKER_WEBHOOK_ALLOW_PRIVATE``).
    """

    def __init__(
        self,
        client: httpx.AsyncClient,
        *,
        attempts: int = 3,
        timeout_seconds: float = 5.0,
        backoff_seconds: float = 0.5,
        allow_private: bool = False,
    ):
        self._client = client
        self._attempts = attempts
        self._timeout = timeout_seconds
        self._backoff = backoff_seconds
        self.allow_private = allow_private

    def check_url(self, url: str) -> None:
        """Refuse a ``webhook_url`` at submission.

        Raises:
            InvalidImageRequestError: (``param="webhook_url"``, ``code="invalid_webhook_url"``)
                the URL is malformed or targets a refused address.
        """
        try:
            check_webhook_url(url, allow_private=self.allow_private)
        except WebhookURLError as exc:
            raise InvalidImageRequestError(
                str(exc), param="webhook_url", code="invalid_webhook_url"
            ) from None

    async def resolve(self, url: str) -> PinnedWebhookTarget:
        """The request to send: ``url`` pinned to an address its host resolves to now, every
        address checked (:func:`broker.wire.webhook.pinned_webhook_target`: no second lookup).

        Raises:
            WebhookURLError: the URL or one of the addresses its host resolves to is refused, or
                the host does not resolve (within the per-attempt timeout).
        """
        check_webhook_url(url, allow_private=self.allow_private)
        target = httpx.URL(url)
        port = target.port or (443 if target.scheme == "https" else 80)
        try:
            infos = await asyncio.wait_for(
                asyncio.get_running_loop().getaddrinfo(target.host, port, type=socket.SOCK_STREAM),
                self._timeout,
            )
        except (OSError, UnicodeError, TimeoutError):
            raise WebhookURLError(f"webhook_url: host {target.host} does not resolve") from None
        return pinned_webhook_target(
            url, [info[4][0] for info in infos], allow_private=self.allow_private
        )

    async def notify(self, url: str, payload: dict[str, Any]) -> bool:
        """Deliver ``payload`` to ``url``. Returns ``True`` once a 2xx answer arrived; ``False``
        after the last failed attempt or at once when the target is refused."""
        problem = "not attempted"
        for attempt in range(self._attempts):
            try:
                target = await self.resolve(url)
            except WebhookURLError as exc:
                logger.warning("webhook for job %s refused: %s", payload.get("id"), exc)
                return False
            try:
                response = await self._client.post(
                    target.url,
                    json=payload,
                    headers=target.headers,
                    extensions=target.extensions,
                    timeout=self._timeout,
                    follow_redirects=False,
                )
                if response.is_success:
                    return True
                problem = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}"
            if attempt + 1 < self._attempts:
                await asyncio.sleep(self._backoff * 2**attempt)
        logger.warning(
            "webhook for job %s failed after %d attempts: %s",
            payload.get("id"),
            self._attempts,
            problem,
        )
        return False
