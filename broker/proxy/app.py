"""``create_app(broker, settings)``: the OpenAI-compatible local proxy as a FastAPI app, with a
lifespan that runs the start-up steps (:mod:`broker.proxy.startup`) and stops auto-funding and the
upstream pool on shutdown; and :func:`serve` to run it with uvicorn."""

from __future__ import annotations

import logging
import time
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from rich.console import Console
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from broker._exceptions import BrokerError, ChainError, InputError
from broker.asgi.guard import MULTIPART_TYPES, LocalGuard, bound_host_names
from broker.asgi.heap import freeze_startup_heap
from broker.asgi.telemetry import fastapi_telemetry_off
from broker.chain.addresses import checksum_address
from broker.inference.errors import SignerNotAcknowledgedError
from broker.proxy.billing import Billing
from broker.proxy.context import ProxyContext
from broker.proxy.errors import (
    ProxyConfigError,
    ProxyHTTPError,
    ProxyStartupError,
    http_exception_error,
    validation_error,
)
from broker.proxy.hot_routes import HotLaneFastAPI, HotRoutes
from broker.proxy.metrics import ProxyMetrics
from broker.proxy.pixazo import PIXAZO_PREFIXES, is_pixazo_path
from broker.proxy.pixazo.errors import PixazoHTTPError, pixazo_error_response, pixazo_guard_body
from broker.proxy.pixazo.router import pixazo_router
from broker.proxy.protocol import ErrorBody, ErrorResponse
from broker.proxy.router import close_extras, hot_chat, require_api_key, router
from broker.proxy.settings import ServeSettings
from broker.proxy.startup import prepare_provider
from broker.proxy.state_store import ServeStateStore
from broker.proxy.upstream import Upstream
from broker.proxy.verification import Verifier
from broker.ui.dashboard import mount_dashboard
from broker.ui.render import UI_PREFIX, error_words, guard_refusal_body
from broker.wire.openapi import SERVE_REQUEST_BODIES, add_openapi_route

__all__ = [
    "EXPOSED_HEADERS",
    "MULTIPART_PATHS",
    "create_app",
    "error_for",
    "error_response",
    "serve",
]

#: Routes that take ``multipart/form-data`` (the others take JSON), for the web guard.
MULTIPART_PATHS = ("/v1/images/edits", "/v1/audio/transcriptions")
#: Response headers a page of an allowed origin may read.
EXPOSED_HEADERS = ("X-0G-Fee", "X-0G-Verified", "ZG-Res-Key", "Retry-After")

logger = logging.getLogger(__name__)


def error_response(exc: ProxyHTTPError) -> JSONResponse:
    """The OpenAI-shaped JSON error (with ``Retry-After`` when the error carries one)."""
    body = ErrorResponse(
        error=ErrorBody(message=exc.message, type=exc.type, code=exc.code, param=exc.param)
    )
    headers = dict(exc.headers)
    if exc.retry_after:
        headers["Retry-After"] = str(exc.retry_after)
    return JSONResponse(body.model_dump(), status_code=exc.status_code, headers=headers or None)


def _render(request: Request, exc: ProxyHTTPError) -> JSONResponse:
    """``exc`` in the shape of the API the request used: Pixazo's on its paths, the dashboard's
    (``{"error": "<words>"}``) under ``/ui/``, else OpenAI's."""
    if request.url.path.startswith(UI_PREFIX):
        return error_words(exc.status_code, exc.message, exc.headers)
    if is_pixazo_path(request.url.path):
        return pixazo_error_response(
            exc.status_code, exc.message, retry_after=exc.retry_after, headers=exc.headers
        )
    return error_response(exc)


def error_for(req: Request, exc: Exception) -> JSONResponse:
    """The answer for an exception a request raised, in the shape of the API it used: typed errors
    keep their status; other :class:`BrokerError` map by category (``_broker_error``); anything else
    is a logged 500 ``internal_error`` whose details never reach the client."""
    if isinstance(exc, ProxyHTTPError):
        return _render(req, exc)
    if isinstance(exc, PixazoHTTPError):
        return pixazo_error_response(
            exc.status_code, exc.message, error=exc.error, retry_after=exc.retry_after
        )
    if isinstance(exc, BrokerError):
        logger.warning("request failed: %s", exc)
        return _render(req, _broker_error(exc))
    if isinstance(exc, StarletteHTTPException):
        return _render(
            req,
            http_exception_error(
                req.method, req.url.path, exc.status_code, exc.detail, exc.headers
            ),
        )
    if isinstance(exc, RequestValidationError):
        return _render(req, validation_error(exc.errors()))
    # a bug, not the client's fault: logged with its traceback, never shown to the client
    logger.error("unexpected error on %s %s", req.method, req.url.path, exc_info=exc)
    return _render(
        req,
        ProxyHTTPError(
            "internal error in serve (logged)",
            status_code=500,
            type="api_error",
            code="internal_error",
        ),
    )


def _broker_error(exc: BrokerError) -> ProxyHTTPError:
    if isinstance(exc, SignerNotAcknowledgedError):
        return ProxyHTTPError(
            str(exc), status_code=403, type="permission_error", code="signer_not_acknowledged"
        )
    if isinstance(exc, InputError):
        return ProxyHTTPError(str(exc), status_code=400, type="invalid_request_error")
    if isinstance(exc, ChainError):
        return ProxyHTTPError(
            f"chain error: {exc}", status_code=502, type="upstream_error", code="chain_error"
        )
    return ProxyHTTPError(str(exc), status_code=500, type="api_error", code=type(exc).__name__)


def _route_label(path: str) -> str:
    if path.startswith("/v1/async/jobs/"):
        return "/v1/async/jobs/{id}"
    if path.startswith("/v2/requests/status/"):
        return "/v2/requests/status/{id}"
    if path.startswith("/v2/media/"):
        return "/v2/media/{id}"
    if path.startswith("/v1/files/"):
        return "/v1/files/{id}"
    known = (
        "/health",
        "/ready",
        "/metrics",
        "/v1/account",
        "/v1/models",
        "/v1/chat/completions",
        "/v1/images/generations",
        "/v1/images/edits",
        "/v1/async/images/generations",
        "/v1/audio/transcriptions",
        "/v1/verify",
        "/z-image-turbo-834/v1/z-image-turbo-request",
        "/z-image-base/v1/z-image-base-request",
    )
    return path if path in known else "other"


class _MetricsMiddleware:
    """Pure ASGI middleware: counts requests by route and status and observes the time to the
    response start (the first byte for streams), once the response is sent."""

    def __init__(self, app: Any, metrics: ProxyMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        seen: list = []  # (seconds to the response start, status) once it is sent

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                seen.append((time.perf_counter() - start, message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:  # observed once the answer is out, so that it does not delay it
            if seen:
                elapsed, status = seen[0]
                m = self.metrics
                route = _route_label(scope.get("path", ""))
                m.child(m.latency, route).observe(elapsed)
                m.child(m.requests, route, str(status)).inc()


def create_app(
    broker: Any,
    settings: ServeSettings,
    *,
    console: Console | None = None,
    run_startup: bool = True,
    freeze_heap: bool = False,
) -> FastAPI:
    """Build the proxy app for one provider, behind :class:`broker.asgi.guard.LocalGuard`
    (loopback or ``allowed_hosts`` Host, no foreign ``Origin`` unless in ``allowed_origins``,
    JSON or multipart bodies only), so that a web page cannot spend through it.

    Args:
        broker: a :class:`broker.broker.Broker` (``.inference`` and ``.ledger`` used) or an
            :class:`~broker.inference.broker.InferenceBroker` (then ``/v1/account`` has no ledger).
        settings: :class:`ServeSettings`; ``settings.provider`` is required.
        console: where start-up progress goes (default stderr).
        run_startup: run the start-up steps (funding, acknowledgement, auto-funding) in the
            lifespan; ``False`` only resolves the service.
        freeze_heap: once started, freeze the start-up objects out of the garbage collector's
            way (:func:`broker.asgi.heap.freeze_startup_heap`; :func:`serve` does, an app served
            inside another program, such as a test, need not).

    Returns:
        The FastAPI app; ``app.state.proxy`` is the :class:`ProxyContext` once started.

    Raises:
        ProxyConfigError: no provider, or a malformed address.
        (In the lifespan) ProxyStartupError and chain errors from the start-up steps.
    """
    if not settings.provider:
        raise ProxyConfigError("no provider: pass --provider ADDRESS (or set ZG_SERVE_PROVIDER)")
    try:
        provider = checksum_address(settings.provider, field="provider")
    except InputError as exc:
        raise ProxyConfigError(str(exc)) from None
    inference = getattr(broker, "inference", None) or broker
    full_broker = broker if inference is not broker else None
    metrics = ProxyMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        # serve's own state database first: a bad ZG_SERVE_STATE_URL fails before any transaction
        try:
            state = await run_in_threadpool(ServeStateStore, settings.state_url)
        except BaseException as exc:
            app.state.startup_error = exc
            raise
        remove_listener = None
        if hasattr(inference, "add_funding_listener"):

            def on_funding(event: Any) -> None:
                if getattr(event, "provider", provider).lower() != provider.lower():
                    return
                metrics.funding_events.labels(kind=event.kind).inc()
                if event.kind == "transfer" and event.amount:
                    metrics.funding_transferred.inc(event.amount)

            remove_listener = inference.add_funding_listener(on_funding)
        funding_started = False
        upstream: Upstream | None = None
        ctx: ProxyContext | None = None

        async def shut_down() -> None:
            """Undo what the start-up began (also after a start-up that failed half-way)."""
            if funding_started:
                inference.stop_auto_funding(service.provider)
            if callable(remove_listener):
                remove_listener()
            if upstream is not None:
                await upstream.aclose()
            if ctx is None:
                state.close()
            else:
                await close_extras(ctx)  # the state store among them

        try:
            if run_startup:
                report = await run_in_threadpool(
                    prepare_provider, inference, provider, settings, console=console
                )
                service, funding_started = report.service, report.auto_funding
            else:
                service = await run_in_threadpool(inference.get_service, provider, refresh=True)
            upstream = Upstream(inference, service.provider, service.url, settings, metrics)
            ctx = ProxyContext(
                settings=settings,
                inference=inference,
                provider=service.provider,
                service=service,
                upstream=upstream,
                verifier=Verifier(
                    inference, service.provider, settings.verify, upstream.signatures, metrics
                ),
                billing=Billing(inference, service.provider, metrics),
                metrics=metrics,
                broker=full_broker,
            )
            ctx.extra["state_store"] = state
            app.state.proxy = ctx
            if freeze_heap:  # no full garbage collection walks the start-up objects again
                freeze_startup_heap()
        except BaseException as exc:
            app.state.startup_error = exc  # serve() reports it in one line
            await shut_down()  # nothing the start-up began outlives it
            raise
        try:
            yield
        finally:
            await shut_down()

    app = HotLaneFastAPI(
        title="0g-broker serve",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        **fastapi_telemetry_off(),  # Prometheus is serve's telemetry
    )
    add_openapi_route(app, SERVE_REQUEST_BODIES, dependencies=[Depends(require_api_key)])

    async def _error(req: Request, exc: Exception) -> JSONResponse:
        return error_for(req, exc)

    # every error in the API's shape: serve's own, Pixazo's, the library's, Starlette's routing and
    # validation errors, and anything unexpected (a 500 without a traceback)
    for exc_type in (
        ProxyHTTPError,
        PixazoHTTPError,
        BrokerError,
        StarletteHTTPException,
        RequestValidationError,
        Exception,
    ):
        app.add_exception_handler(exc_type, _error)

    app.include_router(router)
    app.include_router(pixazo_router)
    # the hot route skips FastAPI's routing layers, inside the guards below (innermost middleware)
    app.add_middleware(
        HotRoutes, routes={("POST", "/v1/chat/completions"): hot_chat}, on_error=error_for
    )
    mount_dashboard(app, inference, full_broker, settings)  # /ui/: the user dashboard
    # web pages may not use serve: Host, Origin, Sec-Fetch-Site and Content-Type checks
    app.add_middleware(
        LocalGuard,
        allowed_hosts=[*settings.allowed_hosts, *bound_host_names(settings.host)],
        allowed_origins=settings.allowed_origins,
        content_types={path: MULTIPART_TYPES for path in MULTIPART_PATHS},
        path_error_bodies={
            UI_PREFIX: guard_refusal_body,
            **{prefix: pixazo_guard_body for prefix in PIXAZO_PREFIXES},
        },
        hosts_hint="; list it in ZG_SERVE_ALLOWED_HOSTS",
        origins_hint="; list it in ZG_SERVE_ALLOWED_ORIGINS",
        expose_headers=EXPOSED_HEADERS,
    )
    app.add_middleware(_MetricsMiddleware, metrics=metrics)
    app.state.metrics = metrics
    return app


class _QuietFailedStartup(logging.Filter):
    """Drops uvicorn's records once the lifespan recorded a start-up error (its traceback would
    reach the user; :func:`serve` raises the typed error instead)."""

    def __init__(self, app: FastAPI) -> None:
        super().__init__()
        self.app = app

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(self.app.state, "startup_error", None) is None


def serve(broker: Any, settings: ServeSettings, *, console: Console | None = None) -> None:
    """Run the proxy with uvicorn on ``settings.host:settings.port`` until interrupted (blocking).

    Raises:
        ProxyConfigError, ProxyStartupError: see :func:`create_app`.
    """
    import uvicorn

    app = create_app(broker, settings, console=console, freeze_heap=True)
    # a local proxy: no X-Forwarded-* rewriting of the client address, no access log line
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="warning",
        lifespan="on",
        proxy_headers=False,
        access_log=False,
        server_header=False,  # no "server: uvicorn" (one header less; nothing to fingerprint)
    )
    server = uvicorn.Server(config)
    quiet = _QuietFailedStartup(app)
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addFilter(quiet)  # no lifespan traceback: the error is raised below instead
    try:
        server.run()
    finally:
        uvicorn_log.removeFilter(quiet)
    error = getattr(app.state, "startup_error", None)
    if error is not None and not server.started:
        if isinstance(error, BrokerError):
            raise error
        raise ProxyStartupError(f"serve could not start: {type(error).__name__}: {error}")
    if not server.started:
        raise ProxyConfigError(
            f"serve did not start on {settings.host}:{settings.port} (port in use, or start-up "
            "failed; see the messages above)"
        )
