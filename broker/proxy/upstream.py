"""The connection to the provider: one long-lived :class:`aiohttp.ClientSession` (its C HTTP parser
costs a fraction of the CPU per request of a pure-Python client, and every request of ``serve``
goes through it), fresh request headers, one retry after a session rejection, and the mapping of
provider errors to OpenAI's error shape. The signature fetches go over the same session
(:class:`SignatureClient`); the readiness probe uses a small :class:`httpx.AsyncClient`
(:attr:`Upstream.client`).

Sources: ``user-broker.md`` §10.1 (routes and upstream URLs), §13 items 9, 14 and 16 (token refresh,
status passthrough, timeouts); ``provider-gateway.md`` B2, B4.5 (insufficient balance is a 400), B6
(429 / 503 with ``Retry-After``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, Literal

import aiohttp
import httpx
from starlette.concurrency import run_in_threadpool

from broker._bounded_read import BoundedBody, BoundedReadError
from broker.asgi.headers import copy_headers
from broker.inference.broker import is_session_rejection
from broker.inference.response_signature import SIGNATURE_MAX_BYTES
from broker.proxy.errors import (
    ProxyHTTPError,
    UpstreamError,
    UpstreamResponseTooLargeError,
    UpstreamTimeoutError,
    UpstreamUnavailableError,
)
from broker.wire.content_coding import decoded_body
from broker.wire.json_body import loads_json_or_none

if TYPE_CHECKING:
    from broker.inference.broker import InferenceBroker
    from broker.proxy.metrics import ProxyMetrics
    from broker.proxy.settings import ServeSettings

__all__ = [
    "AUTH_HEADER_TTL_S",
    "TRANSPORT_ERRORS",
    "Family",
    "SignatureClient",
    "Upstream",
    "UpstreamResponse",
    "decode_body",
    "error_from_upstream",
    "json_dumps",
    "passthrough_headers",
]

logger = logging.getLogger(__name__)

#: Seconds an ``Authorization`` header from ``get_request_headers`` is reused without asking again
#: (the session token itself lives 24 h; this bounds the funding checks and thread hops to one per
#: second at any rate).
AUTH_HEADER_TTL_S = 1.0

#: Exceptions of a provider connection that failed below HTTP while a body was read (broken
#: connection, read timeout: :class:`TimeoutError` is :class:`asyncio.TimeoutError`).
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (aiohttp.ClientError, TimeoutError, OSError)

#: Route family, which selects the read timeout.
Family = Literal["images", "chat", "audio", "default"]

_HOP = {
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "content-encoding",
    "access-control-allow-origin",
    "access-control-expose-headers",
    "access-control-allow-credentials",
    "vary",
    "server",
    "date",
    # serve's own headers: a provider may not set them for serve (nor for its request log)
    "x-0g-fee",
    "x-0g-verified",
    "x-0g-verification-reason",
}


def _message_of(body: bytes) -> tuple[str, str | None, str | None]:
    """(message, type, code) from a provider error body: the gateway's ``{"error": "..."}``,
    OpenAI's ``{"error": {...}}``, or plain text."""
    text = body.decode("utf-8", "replace").strip()
    data = loads_json_or_none(text)
    if data is None:  # not JSON (or a hostile 100 000-deep body): the text itself
        return text[:2000] or "no error message", None, None
    if isinstance(data, dict):
        err = data.get("error")
        if isinstance(err, str):
            return err, None, None
        if isinstance(err, dict):
            code = err.get("code")
            return (
                str(err.get("message") or text[:2000]),
                err.get("type"),
                None if code is None else str(code),
            )
        if isinstance(data.get("detail"), str):
            return data["detail"], None, None
    return text[:2000], None, None


def error_from_upstream(status: int, body: bytes, headers: Mapping[str, str]) -> ProxyHTTPError:
    """Map a provider error response to the error the proxy answers with.

    ========================================== ====== ============================
    provider answer                            status OpenAI ``type`` / ``code``
    ========================================== ====== ============================
    400 ``insufficient balance`` (B4.5) or 402 402    ``insufficient_quota``
    429 (B6)                                   429    ``rate_limit_error`` + ``Retry-After``
    503 (B6 saturation)                        503    ``upstream_overloaded`` + ``Retry-After``
    504                                        504    ``upstream_timeout``
    other 5xx (backend failure)                502    ``upstream_error``, code ``upstream_<status>``
    other 4xx                                  kept   ``invalid_request_error`` (or the body's)
    ========================================== ====== ============================

    Args:
        status: the provider's HTTP status (≥ 400).
        body: its raw body. headers: its headers, a case-insensitive mapping (``Retry-After`` is
            read).

    Returns:
        A :class:`~broker.proxy.errors.ProxyHTTPError` (not raised).
    """
    message, etype, code = _message_of(body)
    retry_after = headers.get("retry-after") or headers.get("Retry-After")
    lowered = message.lower()
    if status == 402 or (status == 400 and "insufficient balance" in lowered):
        return UpstreamError(
            message, status_code=402, type="insufficient_quota", code="insufficient_balance"
        )
    if status == 429:
        return UpstreamError(
            message,
            status_code=429,
            type="rate_limit_error",
            code=code or "rate_limited",
            retry_after=retry_after or "1",
        )
    if status == 503:
        return UpstreamError(
            message,
            status_code=503,
            type="upstream_overloaded",
            code=code or "overloaded",
            retry_after=retry_after or "1",
        )
    if status == 504:
        return UpstreamTimeoutError(message, code="upstream_timeout")
    if status >= 500:
        return UpstreamError(
            f"upstream error (HTTP {status}): {message}", status_code=502, code=f"upstream_{status}"
        )
    return UpstreamError(
        message, status_code=status, type=etype or "invalid_request_error", code=code
    )


def passthrough_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Provider response headers worth returning to the client (``ZG-Res-Key``, ``Retry-After``,
    ``Location``, rate-limit headers, content type); hop-by-hop and CORS headers dropped, names
    lower-cased, a repeated name's values joined with ``", "``.

    Args:
        headers: the provider's headers (a multi-mapping: repeated names are separate items).
    """
    return copy_headers(headers, _HOP)


class UpstreamResponse:
    """A provider response whose body is not read yet: read it with :meth:`Upstream.read_raw` /
    :meth:`Upstream.read`, or stream it with :meth:`aiter_raw` and then :meth:`aclose` it.

    Attributes:
        status_code: the HTTP status. headers: the response headers (a case-insensitive
            multi-mapping; repeated names are separate items).
    """

    __slots__ = ("_body", "_response", "headers", "status_code")

    def __init__(self, response: aiohttp.ClientResponse, body: bytes | None = None) -> None:
        self._response = response
        #: the raw body when it was already read (a 400/401/403 looked at by :meth:`Upstream.send`)
        self._body = body
        self.status_code: int = response.status
        self.headers: Mapping[str, str] = response.headers

    async def aiter_raw(self, limit: int | None = None) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive (not decompressed; chunked framing removed): each
        chunk is handed on as soon as the socket delivers it.

        Args:
            limit: the most bytes handed on in all; the chunk that would pass it raises instead
                (``None``: no limit).

        Raises:
            The :data:`TRANSPORT_ERRORS` of a broken connection or a read timeout;
            UpstreamResponseTooLargeError: more than ``limit`` bytes.
        """
        if self._body is not None:
            if limit is not None and len(self._body) > limit:
                raise UpstreamResponseTooLargeError(limit)
            if self._body:
                yield self._body
            return
        received = 0
        async for chunk in self._response.content.iter_any():
            if limit is not None:
                received += len(chunk)
                if received > limit:
                    raise UpstreamResponseTooLargeError(limit)
            yield chunk

    async def read(self, limit: int | None = None) -> bytes:
        """The whole raw body (not decompressed); the response stays open (:meth:`aclose`).

        Args:
            limit: the most bytes read (``None``: no limit). A ``Content-Length`` above it is
                refused before anything is read; a body without one is read piece by piece and
                refused as soon as it passes the limit.

        Raises:
            The :data:`TRANSPORT_ERRORS` of a broken connection or a read timeout;
            UpstreamResponseTooLargeError: more than ``limit`` bytes.
        """
        if self._body is None:
            length = self._response.content_length
            if limit is None or length is not None:  # the usual answer: read in one go
                if limit is not None and length > limit:
                    raise UpstreamResponseTooLargeError(limit)
                self._body = await self._response.read()
            else:  # no length: piece by piece, refused as soon as it passes the limit
                self._body = b"".join([chunk async for chunk in self.aiter_raw(limit)])
        elif limit is not None and len(self._body) > limit:
            raise UpstreamResponseTooLargeError(limit)
        return self._body

    async def aclose(self) -> None:
        """Hand the connection back to the pool when the body was read to its end, else close
        it."""
        if self._body is not None or self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


class SignatureClient:
    """Signature fetches (B7 ``GET /v1/proxy/signature/<chat id>``) over serve's aiohttp session, in
    the shape :func:`~broker.inference.response_signature.averify_response_signature` takes
    (:class:`~broker.inference.response_signature.AsyncSignatureClient`): the answer comes back as
    an :class:`httpx.Response` with its body read (and its ``Content-Encoding`` removed).

    Args:
        session: the pooled session (:attr:`Upstream.session`).
    """

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    async def get(self, url: str, *, headers: dict[str, str], timeout: float) -> httpx.Response:
        """GET ``url``; ``timeout`` seconds for the whole exchange.

        Raises:
            httpx.TimeoutException: no complete answer within ``timeout``.
            httpx.TransportError: the provider could not be reached or the answer broke off.
        """
        limit = self._timeouts.get(timeout)
        if limit is None:
            limit = self._timeouts[timeout] = aiohttp.ClientTimeout(total=timeout)
        try:
            async with self.session.get(
                url, headers=headers, timeout=limit, allow_redirects=False
            ) as answer:
                body = BoundedBody(SIGNATURE_MAX_BYTES)  # the session's timeout bounds the time
                try:  # never buffer a hostile answer whole
                    async for chunk in answer.content.iter_chunked(SIGNATURE_MAX_BYTES):
                        body.add(chunk)
                except BoundedReadError as exc:
                    raise httpx.ReadError(f"the answer is {exc}") from None
                # the raw header bytes: a value that is not ASCII cannot fail to encode again
                return httpx.Response(
                    answer.status, headers=answer.raw_headers, content=body.value()
                )
        except TimeoutError:
            raise httpx.ReadTimeout(f"no answer within {timeout:g} s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise httpx.ConnectError(f"{type(exc).__name__}: {exc}") from None


class Upstream:
    """Requests to one provider on behalf of the user.

    Create it on the server's running event loop (serve's lifespan) and :meth:`aclose` it at
    shutdown.

    Args:
        inference: the user's :class:`~broker.inference.broker.InferenceBroker` (headers, session
            invalidation).
        provider: checksummed provider address.
        service_url: the provider's base URL (on-chain ``Service.url``).
        settings: the serve settings (timeouts in seconds, pool size).
        metrics: where upstream statuses are counted (optional).
    """

    def __init__(
        self,
        inference: InferenceBroker,
        provider: str,
        service_url: str,
        settings: ServeSettings,
        metrics: ProxyMetrics | None = None,
    ) -> None:
        self.inference = inference
        self.provider = provider
        self.base_url = service_url.rstrip("/")
        self.settings = settings
        self.metrics = metrics
        # identity: the signature covers the bytes as received (B7, not decompressed); a body
        # that comes compressed anyway is hashed raw and decoded for the client (decode_body)
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=settings.max_connections,
                limit_per_host=0,
                # shorter than the provider's idle timeout: no reuse of a closing connection
                keepalive_timeout=settings.upstream_keepalive,
            ),
            headers={"Accept-Encoding": "identity"},
            # bytes are sent as they are: no invented Content-Type
            skip_auto_headers=("Content-Type",),
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
        )
        #: the signature fetches, over the same session
        self.signatures = SignatureClient(self.session)
        #: a small client for the readiness probe
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.default_timeout, connect=settings.connect_timeout),
            limits=httpx.Limits(max_connections=4, max_keepalive_connections=4),
            headers={"Accept-Encoding": "identity"},
        )
        self._auth: tuple[dict[str, str], float] | None = None
        self._timeouts: dict[str, aiohttp.ClientTimeout] = {}
        self._urls: dict[tuple[bool, str], str] = {}

    def __repr__(self) -> str:
        return f"Upstream(provider={self.provider}, url={self.base_url})"

    def timeout_seconds(self, family: Family) -> float:
        """Seconds the provider may stay silent for a route family (``ZG_SERVE_*_TIMEOUT``)."""
        return {
            "images": self.settings.images_timeout,
            "chat": self.settings.chat_timeout,
            "audio": self.settings.audio_timeout,
        }.get(family, self.settings.default_timeout)

    def timeout(self, family: Family) -> aiohttp.ClientTimeout:
        """The timeout of a route family, built once: the family's seconds between bytes read
        and for getting a connection from the pool; ``connect_timeout`` to open one."""
        found = self._timeouts.get(family)
        if found is None:
            seconds = self.timeout_seconds(family)
            found = self._timeouts[family] = aiohttp.ClientTimeout(
                total=None,
                connect=seconds,
                sock_connect=self.settings.connect_timeout,
                sock_read=seconds,
            )
        return found

    async def auth_headers(self) -> dict[str, str]:
        """``Authorization`` for this provider: ``get_request_headers`` (funding check, cached
        session token; in a worker thread since it may read the chain) at most once per
        :data:`AUTH_HEADER_TTL_S` seconds, the same header in between without any thread hop. A
        token the provider rejects is dropped at once (:meth:`send`). Raises the inference
        broker's errors (e.g. not acknowledged)."""
        cached = self._auth
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        headers = await run_in_threadpool(self.inference.get_request_headers, self.provider)
        self._auth = (headers, now + AUTH_HEADER_TTL_S)
        return headers

    def _url(self, proxy: bool, path: str) -> str:
        url = self._urls.get((proxy, path))
        if url is None:  # built once per path (the hot routes repeat theirs)
            url = self.base_url + ("/v1/proxy" if proxy else "") + path
            if len(self._urls) < 64:
                self._urls[(proxy, path)] = url
        return url

    async def send(
        self,
        method: str,
        path: str,
        *,
        family: Family = "default",
        content: bytes | None = None,
        content_type: str | None = None,
        params: dict[str, str] | None = None,
        proxy: bool = True,
        authenticated: bool = True,
        route: str = "",
    ) -> UpstreamResponse:
        """Send one request and return the response with its body **unread** (stream or read it,
        then close it).

        Args:
            method: HTTP method. path: path after ``{url}/v1/proxy`` (``proxy=True``) or after
                ``{url}`` (``proxy=False``, e.g. ``/v1/async/jobs/<id>``).
            family: selects the timeout. content / content_type: the body.
            params: query parameters. authenticated: add the session header.
            route: label for the metrics.

        Returns:
            The :class:`UpstreamResponse` (any status; error mapping is the caller's job via
            :meth:`raise_for_status`).

        Raises:
            UpstreamTimeoutError (504), UpstreamUnavailableError (502); the inference broker's
            errors while building headers.
        """
        url = self._url(proxy, path)
        timeout = self.timeout(family)
        for attempt in (0, 1):
            headers: dict[str, str] = {}
            if content_type:
                headers["Content-Type"] = content_type
            if authenticated:
                headers.update(await self.auth_headers())
            try:
                raw_response = await self.session.request(
                    method,
                    url,
                    data=content or None,
                    params=params or None,
                    headers=headers,
                    timeout=timeout,
                    allow_redirects=False,
                )
            except TimeoutError:
                self._count(route, "timeout")
                raise UpstreamTimeoutError(
                    f"the provider did not answer within {self.timeout_seconds(family):g} s",
                    code="upstream_timeout",
                ) from None
            except (aiohttp.ClientError, OSError) as exc:
                self._count(route, "unreachable")
                raise UpstreamUnavailableError(
                    f"the provider is unreachable ({type(exc).__name__})",
                    code="upstream_unreachable",
                ) from None
            response = UpstreamResponse(raw_response)
            self._count(route, str(response.status_code))
            if authenticated and attempt == 0 and response.status_code in (400, 401, 403):
                raw = await self.read_raw(response)
                if is_session_rejection(response.status_code, decode_body(raw, response.headers)):
                    logger.info(
                        "provider %s rejected the session token; refreshing it once", self.provider
                    )
                    self._auth = None
                    await run_in_threadpool(self.inference.invalidate_session, self.provider)
                    continue
                # the body was read to look at it: hand on a response that replays those bytes
                return UpstreamResponse(raw_response, raw)
            return response
        raise AssertionError("unreachable")  # pragma: no cover

    async def read_raw(self, response: UpstreamResponse) -> bytes:
        """The whole body of a response exactly as received (no ``Content-Encoding`` removed:
        what the provider's signature covers, B7), then closed.

        Raises:
            UpstreamTimeoutError, UpstreamUnavailableError: the body did not arrive.
            UpstreamResponseTooLargeError: it is larger than ``max_response_bytes`` (the
                connection is closed, not reused).
        """
        try:
            return await response.read(self.settings.max_response_bytes)
        except TimeoutError:
            raise UpstreamTimeoutError(
                "the provider's response timed out", code="upstream_timeout"
            ) from None
        except (aiohttp.ClientError, OSError) as exc:
            raise UpstreamUnavailableError(
                f"the provider's response broke off ({type(exc).__name__})",
                code="upstream_unreachable",
            ) from None
        finally:
            await response.aclose()

    async def read(self, response: UpstreamResponse) -> bytes:
        """The whole body of a response, its ``Content-Encoding`` removed (then closed).

        Raises:
            UpstreamTimeoutError, UpstreamUnavailableError: the body did not arrive.
        """
        return decode_body(await self.read_raw(response), response.headers)

    async def raise_for_status(self, response: UpstreamResponse) -> None:
        """Raise the mapped :class:`ProxyHTTPError` when ``response`` is an error (≥ 400); the body
        is read and the response closed in that case."""
        if response.status_code < 400:
            return
        body = await self.read(response)
        raise error_from_upstream(response.status_code, body, response.headers)

    def _count(self, route: str, status: str) -> None:
        if self.metrics is not None:
            m = self.metrics
            m.child(m.upstream_responses, route or "other", status).inc()

    async def aclose(self) -> None:
        """Close the connection pools."""
        await self.session.close()
        await self.client.aclose()


def decode_body(raw: bytes, headers: Mapping[str, str]) -> bytes:
    """``raw`` with the response's ``Content-Encoding`` removed (for the client and for billing;
    the raw bytes are what is hashed)."""
    encoding = headers.get("content-encoding")
    return decoded_body(raw, encoding) if encoding else raw


def json_dumps(data: Any) -> bytes:
    """Compact JSON bytes (what is forwarded)."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
