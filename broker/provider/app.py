"""The gateway's FastAPI app (``provider-gateway.md`` B2–B8).

Request path for ``/v1/proxy/<billable route>``, in order (B6, B3, B4, B5, B7, B9): per-IP bucket →
global in-flight cap → body cap → token → per-user bucket and in-flight cap → account gate →
``pending`` row → forward → fee recorded and response signed (one durable commit) → response
released with ``ZG-Res-Key``. The blocking work runs in two worker-thread hops (token to ``pending``
row; fee and signature), never on the event loop. CORS: :mod:`broker.provider.cors` (B2).

Streams (B5): a background task reads the backend stream to its end and relays it chunk by chunk;
if the client disconnects it keeps reading, so the request is billed from the complete stream's usage
and the user's in-flight slot is released. The fee and the signature are stored before the client
sees the end of the stream. Compressed backend bodies are decoded for billing only.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from broker.provider.async_jobs import AsyncJobTracker
from broker.provider.cors import GatewayCORS
from broker.provider.errors import (
    BodyTooLargeError,
    ForbiddenError,
    GatewayHTTPError,
    UnsupportedEndpointError,
)
from broker.provider.files import FILES_PATH, FileLinks
from broker.provider.forward import (
    BILLABLE_ROUTES,
    FREE_PREFIXES,
    Forwarder,
    decoded_body,
    forward_headers,
    normalise_route,
    response_headers,
    rewrite_request,
)
from broker.provider.gateway import Gateway
from broker.provider.protocol import ModelCard, ModelList, SignatureResponse, UnsettledFeeResponse
from broker.ui.ops import mount_ops
from broker.wire.chat_id import chat_id_from_body
from broker.wire.fees import compute_fee
from broker.wire.forwarded_request import ForwardedRequestError
from broker.wire.job_id import is_valid_job_id
from broker.wire.json_body import InvalidJSONBodyError, loads_request_json
from broker.wire.n import DEFAULT_N, InvalidNError, request_n
from broker.wire.openapi import GATEWAY_REQUEST_BODIES, add_openapi_route
from broker.wire.sse import chat_id_from_sse

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

ASYNC_ROUTES = {
    "/images/generations": "/async/images/generations",
    "/images/edits": "/async/images/edits",
}


def _json_or_none(raw: bytes, content_encoding: str | None) -> object:
    """The JSON value of a (possibly compressed) backend body, or None."""
    try:
        return json.loads(decoded_body(raw, content_encoding))
    except (ValueError, UnicodeDecodeError):
        return None


def _job_id(raw: bytes) -> str | None:
    """``jobId`` (or ``id``) of a backend's 202 body, or None."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(body, dict):
        return None
    job_id = body.get("jobId") or body.get("id")
    return job_id if isinstance(job_id, str) and job_id else None


_IMAGE_ROUTES = ("/images/generations", "/images/edits")


def _check_body(route: str, body: bytes, content_type: str | None) -> int:
    """Refuse a request body before anything is recorded or forwarded, and return the image
    count it bills (1 for other routes).

    A JSON body (``Content-Type`` ``*json*``) must pass the servers' one safe parse
    (:mod:`broker.wire.json_body`: no deep nesting, lone surrogates or invalid UTF-8); an image
    request's ``n`` must follow :mod:`broker.wire.n` (the worker makes, and serve bills, the same
    count).

    Raises:
        GatewayHTTPError: 400 with the reason.
    """
    ctype = (content_type or "").lower()
    try:
        if route in _IMAGE_ROUTES:
            return request_n(body, content_type)
        if "json" in ctype.split(";", 1)[0] and body:
            loads_request_json(body)
    except (InvalidJSONBodyError, InvalidNError) as exc:
        raise GatewayHTTPError(str(exc), status_code=400) from None
    return DEFAULT_N


def _error(exc: GatewayHTTPError) -> JSONResponse:
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
    return JSONResponse({"error": exc.message}, status_code=exc.status_code, headers=headers)


async def _read_body(request: Request, cap: int) -> bytes:
    length = request.headers.get("content-length")
    message = f"Request body size exceeds the maximum allowed size of {cap >> 20}MB"
    if length and length.isdigit() and int(length) > cap:
        raise BodyTooLargeError(message)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise BodyTooLargeError(message)
        chunks.append(chunk)
    return b"".join(chunks)


def create_app(gw: Gateway) -> FastAPI:
    """Build the app for one gateway. The caller closes nothing: the app's lifespan closes the
    backend client; the database and scheduler belong to the caller."""
    settings = gw.settings
    forwarder = Forwarder(settings.backend_timeout)
    secrets_hdr = {k: v.get_secret_value() for k, v in settings.additional_secret.items()}
    whitelist = {a.lower() for a in settings.whitelist}
    if gw.async_jobs is None:
        gw.async_jobs = AsyncJobTracker(gw.db, gw.ledger, settings.output_price)
    jobs: AsyncJobTracker = gw.async_jobs
    watchers: set[asyncio.Task] = set()
    streams: set[asyncio.Task] = set()  # backend streams being read to their end (B5)
    # image urls (module files); in gw.extra so that tests and ops can see the table
    links: FileLinks = gw.extra.setdefault(
        "file_links", FileLinks(settings.serving_url, settings.file_url_ttl)
    )

    async def poll_job(job_id: str) -> tuple[int, object, float | None]:
        upstream = await forwarder.send(
            "GET", settings.backend_for("/images") + f"/async/jobs/{job_id}", dict(secrets_hdr), b""
        )
        raw = b"".join([c async for c in upstream.aiter_raw()])
        await upstream.aclose()
        body = _json_or_none(raw, upstream.headers.get("content-encoding"))
        retry = upstream.headers.get("retry-after")
        return upstream.status_code, body, float(retry) if retry and retry.isdigit() else None

    def start_watch(job_id: str) -> None:
        task = asyncio.create_task(
            jobs.watch(job_id, lambda: poll_job(job_id), timeout=settings.backend_timeout)
        )
        watchers.add(task)
        task.add_done_callback(watchers.discard)

    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        for job_id in await run_in_threadpool(jobs.pending):  # resume after a restart
            start_watch(job_id)
        if gw.revocations is not None:
            gw.revocations.start()
        yield
        if gw.revocations is not None:
            await run_in_threadpool(gw.revocations.stop)
        if streams:  # let streams in progress finish billing (bounded)
            await asyncio.wait(list(streams), timeout=30)
        for task in list(watchers) + list(streams):
            task.cancel()
        await asyncio.gather(*watchers, *streams, return_exceptions=True)
        await forwarder.aclose()

    app = FastAPI(
        title="0g-broker provider gateway",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    add_openapi_route(app, GATEWAY_REQUEST_BODIES)  # public: the gateway has no API key
    app.add_middleware(GatewayCORS)  # the two B2 policies, by path
    mount_ops(app, gw)  # /ui/ ops page and /metrics, behind the admin key

    def _peer(request: Request) -> str:
        return gw.limits.client_ip(request.headers, request.client and request.client.host)

    def _check_ip(request: Request) -> None:
        """The per-IP bucket of B6: ``/v1/proxy/*`` and the other ``/v1`` routes differ."""
        if request.url.path.startswith("/v1/proxy/"):
            gw.limits.check_ip(_peer(request))
        else:
            gw.limits.check_handler_ip(_peer(request))

    @app.exception_handler(GatewayHTTPError)
    async def _gateway_error(_req: Request, exc: GatewayHTTPError) -> JSONResponse:
        return _error(exc)

    # ------------------------------------------------------------------ free routes

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok", "provider": gw.provider}

    @app.get("/v1/quote")
    async def quote(request: Request) -> Response:
        _check_ip(request)
        return Response(json.dumps(gw.signer.quote()), media_type="application/json")

    @app.get("/v1/models")
    async def models(request: Request) -> dict:
        _check_ip(request)
        card = ModelCard(
            id=settings.model,
            owned_by=gw.provider,
            service_type=settings.service_type,
            input_price=str(settings.input_price),
            output_price=str(settings.output_price),
            **settings.model_info,
        )
        return ModelList(data=[card]).model_dump()

    @app.get("/v1/user/{address}/unsettledfee")
    async def unsettled_fee(address: str, request: Request) -> dict:
        _check_ip(request)
        user = await run_in_threadpool(gw.auth.authenticate, request.headers.get("authorization"))
        if user.lower() != address.lower():
            raise ForbiddenError("you can only query your own unsettled fee")
        fee = await run_in_threadpool(gw.ledger.unsettled_fee, user)
        return UnsettledFeeResponse(userAddress=address, unsettledFee=str(fee)).model_dump()

    @app.get("/v1/proxy/signature/{chat_id}")
    async def signature(chat_id: str, request: Request) -> dict:
        _check_ip(request)
        sig = gw.signatures.cached(chat_id) or await run_in_threadpool(gw.signatures.get, chat_id)
        return SignatureResponse(
            text=sig.text, signature=sig.signature, signing_address=gw.signer.address
        ).model_dump()

    # ------------------------------------------------------------------ billed proxying

    def _admit_sync(authorization: str | None, chat_id: str) -> tuple[str, int, int]:
        """B3, the per-user limits, B4 and the ``pending`` row (B4.6), in one worker-thread hop.
        Returns (user, locked balance in neuron, or -1 for a whitelisted user, who is not billed;
        the user's unsettled fees in neuron before this request)."""
        user = gw.auth.authenticate(authorization)
        if user.lower() in whitelist:
            return user, -1, 0
        gw.limits.enter_user(user)
        try:
            unsettled = gw.ledger.unsettled_fee(user)
            locked = gw.auth.check_account(user, unsettled_fee=unsettled)
            gw.ledger.open_request(chat_id, user, settings.service_type, settings.model)
        except BaseException:
            gw.limits.leave_user(user)
            raise
        return user, locked, unsettled

    def _record_sync(
        chat_id: str,
        fwd_body: bytes,
        raw: bytes,
        encoding: str | None,
        streamed: bool,
        billed: bool,
        locked: int,
        unsettled: int,
        image_count: int,
    ) -> None:
        """Fee and response signature of a completed request, committed together (one durable
        transaction) before the response is released (B5, B7, B9); then an early settlement is
        asked for when the locked balance no longer covers the fees seen at admission plus this
        one and the reserve (B4.5, B10)."""
        fee = None
        # the signature covers the bytes as received; billing reads them decoded (B5, B7)
        plain = decoded_body(raw, encoding) if encoding else raw
        if billed:
            fee = compute_fee(
                settings.service_type,
                fwd_body,
                plain,
                streamed=streamed,
                input_price=settings.input_price,
                output_price=settings.output_price,
                image_count=image_count,
            )
        completion_id = chat_id_from_sse(plain) if streamed else chat_id_from_body(plain)
        aliases = (completion_id,) if completion_id else ()
        with gw.db.engine.begin() as conn:
            if fee is not None:
                gw.ledger.bill(chat_id, fee, conn=conn)
            sig = gw.signatures.sign_and_store(chat_id, fwd_body, raw, conn=conn, aliases=aliases)
        gw.signatures.remember(gw.signatures.keys_for(chat_id, aliases), sig)  # committed
        if fee is not None and locked - (unsettled + fee.fee) < settings.min_locked_balance:
            gw.trigger_settlement()

    async def _billed(
        request: Request, route: str, backend_path: str, async_job: bool = False
    ) -> Response:
        body = await _read_body(request, settings.max_body_bytes)
        image_count = _check_body(route, body, request.headers.get("content-type"))
        ctype = request.headers.get("content-type", "")
        try:  # the body as forwarded, which the signature's request hash covers (B5, B7)
            fwd_body = rewrite_request(settings.service_type, route, body, ctype)
        except ForwardedRequestError as exc:
            raise GatewayHTTPError(f"invalid request body: {exc}", status_code=400) from None
        chat_id = str(uuid.uuid4())
        user, locked, unsettled = await run_in_threadpool(
            _admit_sync, request.headers.get("authorization"), chat_id
        )
        billed = locked >= 0
        try:
            params = dict(request.query_params)
            if (
                settings.service_type == "text-to-image"
                and route == "/images/generations"
                and not async_job
            ):
                params["wait"] = "true"
            url = settings.backend_for(route) + backend_path
            headers = forward_headers(request.headers, secrets_hdr)
            if fwd_body is not body:
                headers["content-type"] = "application/json"
            try:
                upstream = await forwarder.send(request.method, url, headers, fwd_body, params)
            except Exception as exc:  # noqa: BLE001
                if billed:
                    await run_in_threadpool(gw.ledger.fail, chat_id)
                raise GatewayHTTPError(
                    f"forward request: backend unreachable ({type(exc).__name__})", status_code=502
                ) from None
        except BaseException:
            if billed:
                gw.limits.leave_user(user)
            raise
        out_headers = response_headers(upstream.headers)
        streamed = "text/event-stream" in upstream.headers.get("content-type", "")

        encoding = upstream.headers.get("content-encoding")

        async def finish(raw: bytes) -> None:
            if async_job:
                plain = decoded_body(raw, encoding) if encoding else raw
                job_id = _job_id(plain) if upstream.status_code == 202 else None
                if job_id is None:
                    if billed:
                        await run_in_threadpool(gw.ledger.fail, chat_id)
                    return
                # billed when the backend reports the job completed (module async_jobs)
                await run_in_threadpool(
                    jobs.register, job_id, chat_id if billed else None, user, image_count
                )
                await run_in_threadpool(gw.signatures.sign_and_store, chat_id, fwd_body, raw)
                start_watch(job_id)
                return
            if upstream.status_code not in (200, 202):
                if billed:
                    await run_in_threadpool(gw.ledger.fail, chat_id)
                return
            await run_in_threadpool(
                _record_sync,
                chat_id,
                fwd_body,
                raw,
                encoding,
                streamed,
                billed,
                locked,
                unsettled,
                image_count,
            )

        if upstream.status_code in (200, 202):
            out_headers.update(
                {"ZG-Res-Key": chat_id, "Provider": gw.provider, "X-Accel-Buffering": "no"}
            )
            if billed:
                out_headers.update(gw.limits.user_headers(user))

        if streamed and upstream.status_code == 200:
            queue: asyncio.Queue[bytes | None] = asyncio.Queue()
            client_gone = asyncio.Event()

            async def pump() -> None:
                """Read the whole backend stream (also after a client disconnect), bill and sign
                it, then end the client's stream."""
                buf = bytearray()
                try:
                    async for chunk in upstream.aiter_raw():
                        buf.extend(chunk)
                        if not client_gone.is_set():
                            queue.put_nowait(chunk)
                except Exception as exc:  # noqa: BLE001 - bill what arrived
                    logger.warning("backend stream %s broke: %s", chat_id, type(exc).__name__)
                finally:
                    try:
                        await upstream.aclose()
                        await finish(bytes(buf))
                    except Exception:
                        logger.exception("billing stream %s failed", chat_id)
                    finally:
                        if billed:
                            gw.limits.leave_user(user)
                        queue.put_nowait(None)

            task = asyncio.create_task(pump())
            streams.add(task)
            task.add_done_callback(streams.discard)

            async def relay() -> AsyncIterator[bytes]:
                try:
                    while (chunk := await queue.get()) is not None:
                        yield chunk
                finally:
                    client_gone.set()

            response = StreamingResponse(relay(), status_code=200, headers=out_headers)
            response.stream_task = task  # _guarded keeps the global slot until it is done
            return response
        try:
            raw = b"".join([c async for c in upstream.aiter_raw()])
            await upstream.aclose()
            if route in _IMAGE_ROUTES and upstream.status_code == 200:
                # backend image links -> ours (module files), before signing: B7 covers what is sent
                linked = links.rewrite(raw, user, settings.backend_for(route), encoding)
                if linked is not None:
                    raw, encoding = linked, None
                    out_headers.pop("content-encoding", None)
            await finish(raw)  # durable fee + signature before the response is released
        finally:
            if billed:
                gw.limits.leave_user(user)
        return Response(raw, status_code=upstream.status_code, headers=out_headers)

    async def _free(request: Request, route: str, backend_path: str) -> Response:
        body = await _read_body(request, settings.max_body_bytes)
        upstream = await forwarder.send(
            request.method,
            settings.backend_for(route) + backend_path,
            forward_headers(request.headers, secrets_hdr),
            body,
            dict(request.query_params),
        )
        raw = b"".join([c async for c in upstream.aiter_raw()])
        await upstream.aclose()
        return Response(
            raw, status_code=upstream.status_code, headers=response_headers(upstream.headers)
        )

    async def _guarded(request: Request, handler, route: str, backend_path: str, **kw) -> Response:
        _check_ip(request)
        gw.limits.enter_global()
        handed_over = False
        try:
            response = await handler(request, route, backend_path, **kw)
            task = getattr(response, "stream_task", None)
            if task is not None:  # a stream holds its global slot until read to the end
                task.add_done_callback(lambda _t: gw.limits.leave_global())
                handed_over = True
            return response
        finally:
            if not handed_over:
                gw.limits.leave_global()

    async def _async_create(request: Request, route: str) -> Response:
        return await _guarded(request, _billed, route, ASYNC_ROUTES[route], async_job=True)

    async def _async_poll(job_id: str, request: Request) -> Response:
        _check_ip(request)
        if not is_valid_job_id(job_id):
            raise GatewayHTTPError("job not found", status_code=404)
        user = await run_in_threadpool(gw.auth.authenticate, request.headers.get("authorization"))
        owner = await run_in_threadpool(jobs.owner, job_id)
        if owner is None or owner.lower() != user.lower():
            raise GatewayHTTPError("job not found", status_code=404)
        upstream = await forwarder.send(
            "GET", settings.backend_for("/images") + f"/async/jobs/{job_id}", dict(secrets_hdr), b""
        )
        raw = b"".join([c async for c in upstream.aiter_raw()])
        await upstream.aclose()
        code = upstream.status_code
        body = _json_or_none(raw, upstream.headers.get("content-encoding"))
        await run_in_threadpool(jobs.observe, job_id, code, body)
        # Retry-After and the other backend headers pass through
        out_headers = response_headers(upstream.headers)
        linked = (
            links.rewrite(
                raw, user, settings.backend_for("/images"), upstream.headers.get("content-encoding")
            )
            if code == 200
            else None
        )
        if linked is not None:
            raw = linked
            out_headers.pop("content-encoding", None)
        return Response(raw, status_code=code, headers=out_headers)

    @app.get(FILES_PATH + "{link_id}")
    async def proxied_file(link_id: str, request: Request) -> Response:
        """An image a ``url`` answer named (module files): only for its user, 404 once expired."""
        _check_ip(request)
        user = await run_in_threadpool(gw.auth.authenticate, request.headers.get("authorization"))
        link = links.get(link_id, user)
        if link is None:
            raise GatewayHTTPError(
                "file not found (unknown, expired or not yours)", status_code=404
            )
        try:
            upstream = await forwarder.send("GET", link.backend_url, dict(secrets_hdr), b"")
        except Exception as exc:  # noqa: BLE001
            raise GatewayHTTPError(
                f"file: backend unreachable ({type(exc).__name__})", status_code=502
            ) from None
        raw = b"".join([c async for c in upstream.aiter_raw()])
        await upstream.aclose()
        if upstream.status_code != 200:
            raise GatewayHTTPError("file not found (expired on the backend)", status_code=404)
        return Response(
            raw,
            media_type=upstream.headers.get("content-type"),
            headers={"Cache-Control": "private, no-store"},
        )

    @app.post("/v1/async/images/generations")
    @app.post("/v1/proxy/async/images/generations")
    async def async_generate(request: Request) -> Response:
        return await _async_create(request, "/images/generations")

    @app.post("/v1/async/images/edits")
    @app.post("/v1/proxy/async/images/edits")
    async def async_edit(request: Request) -> Response:
        return await _async_create(request, "/images/edits")

    @app.get("/v1/async/jobs/{job_id}")
    @app.get("/v1/proxy/async/jobs/{job_id}")
    async def async_job(job_id: str, request: Request) -> Response:
        return await _async_poll(job_id, request)

    @app.api_route("/v1/proxy/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def proxy(path: str, request: Request) -> Response:
        route = normalise_route(path)
        if route in BILLABLE_ROUTES:
            return await _guarded(request, _billed, route, route)
        if route.startswith(FREE_PREFIXES):
            return await _guarded(request, _free, route, route)
        raise UnsupportedEndpointError()

    return app
