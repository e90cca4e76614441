"""The gateway's FastAPI app (``provider-gateway.md`` B2–B8): :func:`create_app`.

Request path for ``/v1/proxy/<billable route>``, in order (B6, B3, B4, B5, B7, B9): per-IP bucket →
global in-flight cap → body cap (the :mod:`broker.provider.dependencies` of the route) → token →
per-user bucket and in-flight cap → account gate → ``pending`` row (:meth:`BilledRequest.admit`)
→ forward (:meth:`~BilledRequest.forward`) → fee recorded and response signed, one durable commit
(:meth:`~BilledRequest.finish`) → user slot released (:meth:`~BilledRequest.release`) → response
sent with ``ZG-Res-Key`` (and ``ZG-Res-Signature`` when not streamed). Chain reads run in a worker
thread; once the token, account and outstanding fees are in memory the checks run on the event
loop, and on a SQLite file the ``pending`` row and the fee + signature are committed by the loop
itself when the database writer is idle (else by its thread, awaited).

Modules: routes in :mod:`broker.provider.router`, the billed request in
:mod:`broker.provider.billed` (streams: B5, read to their end even after a client disconnect),
per-app state in :mod:`broker.provider.runtime`, CORS in :mod:`broker.provider.cors` (B2), the
billed ``POST`` routes without FastAPI's routing in :mod:`broker.provider.hot_route`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from broker.asgi.heap import freeze_startup_heap
from broker.asgi.hot_routes import HotLaneFastAPI, HotRoutes
from broker.asgi.telemetry import fastapi_telemetry_off
from broker.provider.cors import GatewayCORS
from broker.provider.errors import GatewayHTTPError
from broker.provider.gateway import Gateway
from broker.provider.hot_route import (
    HOT_ROUTES,
    error_response,
    hot_error,
    internal_error_response,
)
from broker.provider.router import ROUTERS
from broker.provider.runtime import GatewayRuntime
from broker.ui.ops import mount_ops
from broker.wire.openapi import GATEWAY_REQUEST_BODIES, add_openapi_route

__all__ = ["create_app", "error_response"]


async def _gateway_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GatewayHTTPError)
    return error_response(exc)


async def _internal_error(_request: Request, _exc: Exception) -> JSONResponse:
    # Starlette's outermost layer sends this, then re-raises: the server logs it once
    return internal_error_response()


def create_app(gw: Gateway, *, freeze_heap: bool = False) -> FastAPI:
    """Build the app for one gateway.

    The app's state is one :class:`GatewayRuntime` (``app.state.gateway``); its lifespan resumes
    the watching of unfinished async jobs, starts and stops the revocation watcher, lets streams
    in progress finish billing, and closes the backend client. The database and the settlement
    scheduler belong to the caller.

    Args:
        gw: the gateway parts (:func:`broker.provider.serve.build_gateway`).
        freeze_heap: once started, freeze the start-up objects out of the garbage collector's
            way (:func:`broker.asgi.heap.freeze_startup_heap`; the gateway process does, an app
            served inside another program, such as a test, need not).

    Returns:
        The FastAPI app (``/openapi.json`` public; ``/ui/`` and ``/metrics`` behind the admin key).
    """
    rt = GatewayRuntime.build(gw)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await rt.start()
        if freeze_heap:  # no full garbage collection walks the start-up objects again
            freeze_startup_heap()
        yield
        await rt.stop()

    app = HotLaneFastAPI(  # the billed routes also skip FastAPI's outer layers
        title="0g-broker provider gateway",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        **fastapi_telemetry_off(),  # Prometheus is the gateway's telemetry
    )
    app.state.gateway = rt
    add_openapi_route(app, GATEWAY_REQUEST_BODIES)  # public: the gateway has no API key
    # the billed POST routes skip FastAPI's routing layers, inside CORS and the activity count
    app.add_middleware(HotRoutes, routes=HOT_ROUTES, on_error=hot_error)
    app.add_middleware(GatewayCORS)  # the two B2 policies, by path
    mount_ops(app, gw)  # /ui/ ops page and /metrics, behind the admin key
    app.add_exception_handler(GatewayHTTPError, _gateway_error)
    app.add_exception_handler(Exception, _internal_error)  # 500 {"error": ...}, not plain text
    for router in ROUTERS:
        app.include_router(router)
    return app
