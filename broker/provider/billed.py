"""One billed ``/v1/proxy`` request, step by step (``provider-gateway.md`` B3–B7, B9):
:meth:`BilledRequest.admit` → :meth:`~BilledRequest.forward` → :meth:`~BilledRequest.finish` →
:meth:`~BilledRequest.release`, driven by :meth:`BilledRequest.respond`.

* **admit** (one worker-thread hop): the session token (B3), the per-user bucket and in-flight slot
  (B6), the account gate (B4) and the ``pending`` request row (B4.6). A whitelisted user is
  neither limited per user nor billed.
* **forward**: the body as forwarded (B5) to the backend; an unreachable backend fails the
  ``pending`` row and answers 502.
* **finish** (one worker-thread hop): the fee (B9) and the response signature (B7) in one durable
  commit, then an early settlement is asked for when the locked balance runs low (B4.5, B10). An
  async job (B2) is registered and signed instead, and billed when it completes.
* **release**: the user's in-flight slot (B6), on every path.

Streams (B5): a background task (the pump) reads the backend stream to its end and relays it chunk
by chunk; if the client disconnects it keeps reading, so the request is billed from the complete
stream's usage, the slots are released, and the fee and signature are stored before the client
sees the end of the stream. Compressed backend bodies are decoded for billing only.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator

from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from broker.provider.dependencies import GlobalSlot
from broker.provider.errors import GatewayHTTPError, UnsupportedEndpointError
from broker.provider.forward import (
    BackendResponse,
    decoded_body,
    forward_headers,
    response_headers,
    rewrite_request,
    serves_billable_route,
)
from broker.provider.gateway import INLINE_SIGN_MAX
from broker.provider.runtime import GatewayRuntime
from broker.provider.signing import StoredSignature
from broker.wire.chat_id import chat_id_from_body
from broker.wire.fees import Fee, compute_fee, parse_response_object
from broker.wire.forwarded_request import ForwardedRequestError
from broker.wire.json_body import InvalidJSONBodyError, loads_json_or_none, loads_request_json
from broker.wire.n import DEFAULT_N, InvalidNError, request_n
from broker.wire.sse import summarize_sse

__all__ = [
    "ASYNC_ROUTES",
    "IMAGE_ROUTES",
    "RES_KEY_HEADER",
    "RES_SIGNATURE_HEADER",
    "BilledRequest",
    "check_body",
    "job_id_of",
    "respond_billed",
]

logger = logging.getLogger(__name__)

#: The chat id of a billed response (B7), set when the gateway signs it.
RES_KEY_HEADER = "ZG-Res-Key"
#: The ``0x`` hex B7 signature of a non-streamed billed response (an extension: serve checks it
#: without fetching ``/v1/proxy/signature/{chat_id}``; real 0G gateways do not send it).
RES_SIGNATURE_HEADER = "ZG-Res-Signature"
#: Routes whose body carries an image count ``n`` (B9) and whose answers may carry file links.
IMAGE_ROUTES = ("/images/generations", "/images/edits")
#: Billable route → the backend's async path (B2).
ASYNC_ROUTES = {
    "/images/generations": "/async/images/generations",
    "/images/edits": "/async/images/edits",
}


def check_body(route: str, body: bytes, content_type: str | None) -> int:
    """Refuse a request body before anything is recorded or forwarded, and return the image
    count it bills (1 for other routes).

    A JSON body (``Content-Type`` ``*json*``) must pass the servers' one safe parse
    (:mod:`broker.wire.json_body`: no deep nesting, lone surrogates or invalid UTF-8); an image
    request's ``n`` must follow :mod:`broker.wire.n` (the worker makes, and serve bills, the same
    count). An image request is read as a ``multipart/form-data`` form only when it is labelled
    so and is not a JSON text; any other is read as JSON whatever its label says (a backend may
    read a JSON body whatever its ``Content-Type``; billed by its label, ``{"n": 16}`` sent as
    ``text/plain`` was billed one image): a body that is neither is refused.

    Raises:
        GatewayHTTPError: 400 with the reason.
    """
    ctype = (content_type or "").lower()
    try:
        if route in IMAGE_ROUTES:
            form = ctype.startswith("multipart/form-data") and not body.lstrip()[:1] in (b"{", b"[")
            return request_n(body, content_type if form else "application/json")
        if "json" in ctype.split(";", 1)[0] and body:
            loads_request_json(body)
    except (InvalidJSONBodyError, InvalidNError) as exc:
        raise GatewayHTTPError(str(exc), status_code=400) from None
    return DEFAULT_N


def job_id_of(raw: bytes) -> str | None:
    """``jobId`` (or ``id``) of a backend's 202 body, or ``None``."""
    body = loads_json_or_none(raw)
    if not isinstance(body, dict):
        return None
    job_id = body.get("jobId") or body.get("id")
    return job_id if isinstance(job_id, str) and job_id else None


async def respond_billed(
    rt: GatewayRuntime,
    request: Request,
    route: str,
    slot: GlobalSlot,
    body: bytes,
    *,
    async_job: bool = False,
) -> Response:
    """A billed request to ``route`` after the per-IP bucket, the global slot and the body cap:
    :meth:`BilledRequest.respond` (an async job goes to the backend's path of
    :data:`ASYNC_ROUTES`). The one call of the FastAPI routes and the hot routes.

    Raises:
        GatewayHTTPError: the refusal of :class:`BilledRequest` or of its steps.
    """
    backend_path = ASYNC_ROUTES[route] if async_job else route
    billed = BilledRequest(rt, request, route, backend_path, body, async_job=async_job)
    return await billed.respond(slot)


async def _relay(
    queue: asyncio.Queue[bytes | None], client_gone: asyncio.Event
) -> AsyncIterator[bytes]:
    """The client's side of a stream: the pump's chunks until its ``None``; marks the client gone
    when it stops early (disconnect)."""
    try:
        while (chunk := await queue.get()) is not None:
            yield chunk
    finally:
        client_gone.set()


class BilledRequest:
    """One billed request to a billable route (the module docstring gives the steps).

    Made after the per-IP bucket, the global slot and the body cap; the constructor refuses a bad
    body (400) before anything is recorded.

    Args:
        rt: the gateway runtime.
        request: the client request (method, headers and query are forwarded).
        route: the billable route (``/chat/completions``...). backend_path: the backend path.
        body: the client body as read. async_job: an async image job (B2).

    Raises:
        UnsupportedEndpointError: 400 for a route the service type does not serve
            (:func:`~broker.provider.forward.serves_billable_route`).
        GatewayHTTPError: 415 for a compressed body (any ``Content-Encoding`` but
            ``identity``: its ``n``, stream flag or model could not be read for billing).
        GatewayHTTPError: 400 for a body that :func:`check_body` refuses or whose JSON numbers
            cannot be forwarded exactly.
    """

    def __init__(
        self,
        rt: GatewayRuntime,
        request: Request,
        route: str,
        backend_path: str,
        body: bytes,
        *,
        async_job: bool = False,
    ) -> None:
        self.rt, self.gw, self.settings = rt, rt.gw, rt.settings
        self.request, self.route, self.backend_path = request, route, backend_path
        self.body, self.async_job = body, async_job
        if not serves_billable_route(self.settings.service_type, route):
            raise UnsupportedEndpointError()
        if request.headers.get("content-encoding", "identity").strip().lower() != "identity":
            # the fee is read from the body: one the gateway cannot read is not forwarded
            raise GatewayHTTPError(
                "a request Content-Encoding is not supported (send it uncompressed)",
                status_code=415,
            )
        content_type = request.headers.get("content-type")
        self.image_count = check_body(route, body, content_type)
        try:  # the body as forwarded, which the signature's request hash covers (B5, B7)
            self.fwd_body = rewrite_request(
                self.settings.service_type, route, body, content_type or ""
            )
        except ForwardedRequestError as exc:
            raise GatewayHTTPError(f"invalid request body: {exc}", status_code=400) from None
        self.chat_id = str(uuid.uuid4())
        self.user = ""
        self.locked = -1  # neuron; -1: whitelisted, not billed
        self.unsettled = 0  # neuron, the user's unsettled fees at admission
        self._holds_user_slot = False

    @property
    def billed(self) -> bool:
        """Whether this request is billed (the user is not whitelisted)."""
        return self.locked >= 0

    # ------------------------------------------------------------------ the steps

    async def admit(self) -> None:
        """B3, the per-user limits, B4 and the ``pending`` row (:meth:`Gateway.admit
        <broker.provider.gateway.Gateway.admit>`: on the event loop when the token, account,
        service and outstanding fees are in memory, else in one worker-thread hop).

        Raises:
            SessionValidationError, RateLimitedError, RequestValidationError: the refusal (the
                user's slot is not kept).
        """
        authorization = self.request.headers.get("authorization")
        self.user, self.locked, self.unsettled = await self.gw.admit(authorization, self.chat_id)
        self._holds_user_slot = self.billed

    async def forward(self) -> BackendResponse:
        """Send the forwarded body to the backend (B5).

        Returns:
            The backend response, its body unread.

        Raises:
            GatewayHTTPError: 502 when the backend is unreachable (the ``pending`` row is failed
                first: nothing is charged).
        """
        params = dict(self.request.query_params)
        sync_image = self.route == "/images/generations" and not self.async_job
        if self.settings.service_type == "text-to-image" and sync_image:
            params["wait"] = "true"
        url = self.settings.backend_for(self.route) + self.backend_path
        headers = forward_headers(self.request.headers, self.rt.secret_headers)
        if self.fwd_body is not self.body:
            headers["content-type"] = "application/json"
        try:
            return await self.rt.forwarder.send(
                self.request.method, url, headers, self.fwd_body, params
            )
        except Exception as exc:  # noqa: BLE001 - any transport failure is the backend's
            await self._fail()
            raise GatewayHTTPError(
                f"forward request: backend unreachable ({type(exc).__name__})", status_code=502
            ) from None

    async def finish(
        self, status_code: int, raw: bytes, encoding: str | None, *, streamed: bool = False
    ) -> StoredSignature | None:
        """Account for the backend's complete answer ``raw`` (as received; ``encoding`` its
        ``Content-Encoding``): fee and signature committed together for a 200/202 answer, the
        ``pending`` row failed for any other, an async job registered and signed.

        Returns:
            The stored signature, or ``None`` when nothing was signed.
        """
        if self.async_job:
            return await self._finish_async_job(status_code, raw, encoding)
        if status_code not in (200, 202):
            await self._fail()
            return None
        if len(raw) + len(self.fwd_body) > INLINE_SIGN_MAX:  # hashing would hold the loop
            return await run_in_threadpool(self._record_sync, raw, encoding, streamed)
        fee, aliases = self._fee_and_aliases(raw, encoding, streamed)
        sig = await self.gw.record_response_async(
            self.chat_id, self.fwd_body, raw, fee=fee, user=self.user, aliases=aliases
        )
        self._settle_if_low(fee)
        return sig

    def release(self) -> None:
        """Release the user's in-flight slot (once; nothing for a whitelisted user)."""
        if self._holds_user_slot:
            self._holds_user_slot = False
            self.gw.limits.leave_user(self.user)

    # ------------------------------------------------------------------ the whole request

    async def respond(self, slot: GlobalSlot) -> Response:
        """Run the steps and answer: a relayed stream (which takes over ``slot``) or the complete
        response, released only after its fee and signature are committed.

        Raises:
            GatewayHTTPError: a refusal of :meth:`admit` or :meth:`forward`.
        """
        await self.admit()
        try:
            upstream = await self.forward()
        except BaseException:
            self.release()
            raise
        headers = self._response_headers(upstream)
        streamed = "text/event-stream" in upstream.headers.get("content-type", "")
        if streamed and upstream.status_code == 200:
            return self._stream(upstream, headers, slot)
        return await self._complete(upstream, headers, streamed)

    def _response_headers(self, upstream: BackendResponse) -> dict[str, str]:
        headers = response_headers(upstream.headers)
        if upstream.status_code in (200, 202):
            headers.update(
                {
                    RES_KEY_HEADER: self.chat_id,
                    "Provider": self.gw.provider,
                    "X-Accel-Buffering": "no",
                }
            )
            if self.billed:
                headers.update(self.gw.limits.user_headers(self.user))
        return headers

    async def _complete(
        self, upstream: BackendResponse, headers: dict[str, str], streamed: bool
    ) -> Response:
        encoding = upstream.headers.get("content-encoding")
        try:
            raw = b"".join([c async for c in upstream.aiter_raw()])
            await upstream.aclose()
            if self.route in IMAGE_ROUTES and upstream.status_code == 200:
                # backend image links -> ours (module files), before signing: B7 covers what is sent
                backend = self.settings.backend_for(self.route)
                linked = self.rt.links.rewrite(raw, self.user, backend, encoding)
                if linked is not None:
                    raw, encoding = linked, None
                    headers.pop("content-encoding", None)
            # durable fee + signature before the response is released
            sig = await self.finish(upstream.status_code, raw, encoding, streamed=streamed)
        finally:
            self.release()
        if sig is not None:
            headers[RES_SIGNATURE_HEADER] = sig.signature
        return Response(raw, status_code=upstream.status_code, headers=headers)

    def _stream(
        self, upstream: BackendResponse, headers: dict[str, str], slot: GlobalSlot
    ) -> StreamingResponse:
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        client_gone = asyncio.Event()
        task = asyncio.create_task(self._pump(upstream, queue, client_gone))
        self.rt.track_stream(task)
        slot.hold_until(task)  # the stream keeps its global slot until read to the end
        return StreamingResponse(_relay(queue, client_gone), status_code=200, headers=headers)

    async def _pump(
        self,
        upstream: BackendResponse,
        queue: asyncio.Queue[bytes | None],
        client_gone: asyncio.Event,
    ) -> None:
        """Read the whole backend stream (also after a client disconnect), bill and sign it, then
        end the client's stream."""
        buf = bytearray()
        try:
            async for chunk in upstream.aiter_raw():
                buf.extend(chunk)
                if not client_gone.is_set():
                    queue.put_nowait(chunk)
        except Exception as exc:  # noqa: BLE001 - bill what arrived
            logger.warning("backend stream %s broke: %s", self.chat_id, type(exc).__name__)
        finally:
            try:
                await upstream.aclose()
                encoding = upstream.headers.get("content-encoding")
                await self.finish(upstream.status_code, bytes(buf), encoding, streamed=True)
            except Exception:
                logger.exception("billing stream %s failed", self.chat_id)
            finally:
                self.release()
                queue.put_nowait(None)

    # ------------------------------------------------------------------ ledger and signatures

    async def _fail(self) -> None:
        """Fail the ``pending`` row (never charged, B9); nothing for an unbilled request."""
        if self.billed:
            await self.gw.ledger.fail_async(self.chat_id, user=self.user)

    def _fee_and_aliases(
        self, raw: bytes, encoding: str | None, streamed: bool
    ) -> tuple[Fee | None, tuple[str, ...]]:
        """The fee of a completed request (``None`` when not billed) and the ids its signature
        is also stored under (the response's completion ``id``, read from the object the fee rule
        parsed: :func:`~broker.wire.fees.parse_response_object`, invalid UTF-8 replaced)."""
        settings = self.settings
        # the signature covers the bytes as received; billing reads them decoded (B5, B7)
        plain = decoded_body(raw, encoding) if encoding else raw
        # the answer read once for the fee and the completion id: the stream, or the JSON object
        summary = summarize_sse(plain) if streamed else None
        parsed = None if streamed else parse_response_object(plain)
        fee: Fee | None = None
        if self.billed:
            fee = compute_fee(
                settings.service_type,
                self.fwd_body,
                plain,
                streamed=streamed,
                input_price=settings.input_price,
                output_price=settings.output_price,
                image_count=self.image_count,
                stream_summary=summary,
                parsed_response=parsed,
            )
        completion_id = summary.chat_id if summary is not None else chat_id_from_body(parsed)
        return fee, ((completion_id,) if completion_id else ())

    def _settle_if_low(self, fee: Fee | None) -> None:
        """Ask for an early settlement when the locked balance no longer covers the fees seen at
        admission plus this one and the reserve (B4.5, B10)."""
        if (
            fee is not None
            and self.locked - (self.unsettled + fee.fee) < self.settings.min_locked_balance
        ):
            self.gw.trigger_settlement()

    def _record_sync(self, raw: bytes, encoding: str | None, streamed: bool) -> StoredSignature:
        """Fee and response signature of a completed request, committed together (one durable
        transaction) before the response is released (B5, B7, B9), in a worker thread (large
        exchanges); then :meth:`_settle_if_low`."""
        fee, aliases = self._fee_and_aliases(raw, encoding, streamed)
        sig = self.gw.record_response(
            self.chat_id, self.fwd_body, raw, fee=fee, user=self.user, aliases=aliases
        )
        self._settle_if_low(fee)
        return sig

    async def _finish_async_job(
        self, status_code: int, raw: bytes, encoding: str | None
    ) -> StoredSignature | None:
        """An accepted async job (202 with a job id): registered, its 202 answer signed, and
        watched; billed when the backend reports it completed (:mod:`broker.provider.async_jobs`).
        Any other answer fails the ``pending`` row."""
        plain = decoded_body(raw, encoding) if encoding else raw
        job_id = job_id_of(plain) if status_code == 202 else None
        if job_id is None:
            await self._fail()
            return None
        request_hash = self.chat_id if self.billed else None
        await run_in_threadpool(
            self.rt.jobs.register, job_id, request_hash, self.user, self.image_count
        )
        sig = await run_in_threadpool(
            self.gw.signatures.sign_and_store, self.chat_id, self.fwd_body, raw
        )
        self.rt.start_watch(job_id)
        return sig
