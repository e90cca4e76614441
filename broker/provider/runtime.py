"""The per-app state of a running gateway (:class:`GatewayRuntime`, ``app.state.gateway``).

One object instead of closures: the backend client, the ``additionalSecret`` headers, the
whitelist, the async-job tracker and its watcher tasks, the file links and the backend streams
being read to their end (B5). Handlers reach it through
:func:`broker.provider.dependencies.runtime`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field

from starlette.concurrency import run_in_threadpool

from broker.provider.async_jobs import AsyncJobTracker, JobPoll
from broker.provider.files import FileLinks
from broker.provider.forward import Forwarder, decoded_body
from broker.provider.gateway import Gateway
from broker.provider.settings import ProviderSettings
from broker.wire.json_body import loads_json_or_none

__all__ = ["STREAM_DRAIN_S", "BackendAnswer", "GatewayRuntime", "json_or_none"]

#: Seconds the shutdown waits for streams in progress to finish billing before cancelling them.
STREAM_DRAIN_S = 30.0


def json_or_none(raw: bytes, content_encoding: str | None) -> object:
    """The JSON value of a (possibly compressed) backend body, or ``None`` when it is not JSON."""
    try:
        plain = decoded_body(raw, content_encoding)
    except ValueError:
        return None
    return loads_json_or_none(plain)


@dataclass(frozen=True)
class BackendAnswer:
    """A backend response read to its end: status, headers and the raw (undecoded) body."""

    status_code: int
    headers: Mapping[str, str]
    raw: bytes

    @property
    def content_encoding(self) -> str | None:
        """Its ``Content-Encoding`` header, or ``None``."""
        return self.headers.get("content-encoding")


@dataclass
class GatewayRuntime:
    """What the gateway's handlers share besides the :class:`Gateway` parts.

    Attributes:
        gw: the gateway parts (settings, ledger, signatures, limits, auth...).
        forwarder: the pooled backend client (closed by :meth:`stop`).
        secret_headers: the ``additionalSecret`` headers sent to the backend (never logged).
        whitelist: lower-case addresses served without billing.
        jobs: the async-job tracker (``gw.async_jobs``).
        links: the image file links (also ``gw.extra["file_links"]`` for tests and ops).
        watchers: tasks polling async jobs to completion.
        streams: tasks reading backend streams to their end (B5).
    """

    gw: Gateway
    forwarder: Forwarder
    secret_headers: dict[str, str]
    whitelist: frozenset[str]
    jobs: AsyncJobTracker
    links: FileLinks
    watchers: set[asyncio.Task] = field(default_factory=set)
    streams: set[asyncio.Task] = field(default_factory=set)

    @classmethod
    def build(cls, gw: Gateway) -> GatewayRuntime:
        """The runtime of ``gw``: makes the backend client, and the async-job tracker and the
        file-link table when ``gw`` has none yet (both are stored back on ``gw``)."""
        settings = gw.settings
        if gw.async_jobs is None:
            gw.async_jobs = AsyncJobTracker(gw.db, gw.ledger, settings.output_price)
        links = gw.extra.setdefault(
            "file_links", FileLinks(settings.serving_url, settings.file_url_ttl)
        )
        return cls(
            gw=gw,
            forwarder=Forwarder(settings.backend_timeout),
            secret_headers={k: v.get_secret_value() for k, v in settings.additional_secret.items()},
            whitelist=frozenset(a.lower() for a in settings.whitelist),
            jobs=gw.async_jobs,
            links=links,
        )

    @property
    def settings(self) -> ProviderSettings:
        """The gateway settings."""
        return self.gw.settings

    def is_whitelisted(self, user: str) -> bool:
        """Whether ``user`` (any case) is served without billing."""
        return user.lower() in self.whitelist

    async def backend_get(self, url: str) -> BackendAnswer:
        """``GET url`` on the backend with the secret headers, read to its end.

        Raises:
            aiohttp.ClientError, OSError, TimeoutError: the backend is unreachable or broke
                the answer.
        """
        upstream = await self.forwarder.send("GET", url, dict(self.secret_headers), b"")
        try:
            raw = b"".join([c async for c in upstream.aiter_raw()])
        finally:
            await upstream.aclose()
        return BackendAnswer(upstream.status_code, upstream.headers, raw)

    def job_url(self, job_id: str) -> str:
        """The backend URL of async job ``job_id``."""
        return self.settings.backend_for("/images") + f"/async/jobs/{job_id}"

    async def poll_job(self, job_id: str) -> JobPoll:
        """One backend poll of ``job_id``.

        Returns:
            ``(status, JSON body or None, Retry-After seconds or None)``.

        Raises:
            aiohttp.ClientError, OSError, TimeoutError: the backend is unreachable (the
                watcher retries).
        """
        answer = await self.backend_get(self.job_url(job_id))
        retry = answer.headers.get("retry-after")
        body = json_or_none(answer.raw, answer.content_encoding)
        return answer.status_code, body, float(retry) if retry and retry.isdigit() else None

    def start_watch(self, job_id: str) -> None:
        """Poll ``job_id`` in the background until it finishes, billing it on completion."""
        task = asyncio.create_task(
            self.jobs.watch(
                job_id, lambda: self.poll_job(job_id), timeout=self.settings.backend_timeout
            )
        )
        self.watchers.add(task)
        task.add_done_callback(self.watchers.discard)

    def track_stream(self, task: asyncio.Task) -> None:
        """Keep a stream's pump task until it is done (the shutdown lets it finish billing)."""
        self.streams.add(task)
        task.add_done_callback(self.streams.discard)

    async def start(self) -> None:
        """Lifespan start: resume watching unfinished async jobs, start the revocation watcher."""
        for job_id in await run_in_threadpool(self.jobs.pending):
            self.start_watch(job_id)
        if self.gw.revocations is not None:
            self.gw.revocations.start()

    async def stop(self) -> None:
        """Lifespan end: stop the revocation watcher, let streams in progress finish billing
        (at most :data:`STREAM_DRAIN_S` s), cancel the rest, close the backend client."""
        if self.gw.revocations is not None:
            await run_in_threadpool(self.gw.revocations.stop)
        if self.streams:
            await asyncio.wait(list(self.streams), timeout=STREAM_DRAIN_S)
        tasks = list(self.watchers) + list(self.streams)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.forwarder.aclose()
