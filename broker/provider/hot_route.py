"""The gateway's billed routes served without FastAPI's per-request machinery (issue #11): the
``POST`` paths that go through :class:`~broker.provider.billed.BilledRequest`, handed straight to
their handler by :class:`broker.asgi.hot_routes.HotRoutes` (inside the CORS and activity layers,
which still see every request).

Each handler calls the route's dependencies of :mod:`broker.provider.dependencies` itself, in the
order FastAPI runs them for the route, so every check keeps its one definition: the route
(:func:`~broker.provider.dependencies.proxy_route`), the per-IP bucket
(:func:`~broker.provider.dependencies.ip_limit`), the global in-flight slot
(:func:`~broker.provider.dependencies.global_slot`, held for the handler's run, or by a stream)
and the capped body (:func:`~broker.provider.dependencies.request_body`); then
:func:`~broker.provider.billed.respond_billed`. Refusals are rendered by :func:`error_response`,
the app's own renderer; an unexpected error is logged once and answered 500 in the same
``{"error": ...}`` shape (:func:`internal_error_response`, as the FastAPI routes answer it).
Any other request (another method, a path spelled otherwise, a free route) goes to the FastAPI
app, whose routes stay for the OpenAPI document.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from broker.asgi.hot_routes import Handler
from broker.provider.billed import ASYNC_ROUTES, respond_billed
from broker.provider.dependencies import global_slot, ip_limit, proxy_route, request_body, runtime
from broker.provider.errors import GatewayHTTPError
from broker.provider.forward import BILLABLE_ROUTES
from broker.provider.protocol import ErrorBody

__all__ = [
    "HOT_ROUTES",
    "INTERNAL_ERROR_MESSAGE",
    "PROXY_PREFIX",
    "error_response",
    "hot_error",
    "internal_error_response",
]

logger = logging.getLogger(__name__)

#: The prefix of the forwarded routes (``/v1/proxy/{path}``).
PROXY_PREFIX = "/v1/proxy/"
#: The whole answer to an unexpected error (its details stay in the server's log).
INTERNAL_ERROR_MESSAGE = "internal server error"
#: :func:`global_slot` as an ``async with`` (FastAPI drives the generator the same way).
_held_global_slot = asynccontextmanager(global_slot)


def error_response(exc: GatewayHTTPError) -> JSONResponse:
    """``{"error": message}`` with the error's status (and ``Retry-After`` when it has one)."""
    headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
    body = ErrorBody(error=exc.message).model_dump()
    return JSONResponse(body, status_code=exc.status_code, headers=headers)


def internal_error_response() -> JSONResponse:
    """500 ``{"error": "internal server error"}``: the gateway's answer to an unexpected error
    (no type, message or traceback of it reaches the client; B2's error shape)."""
    return JSONResponse(ErrorBody(error=INTERNAL_ERROR_MESSAGE).model_dump(), status_code=500)


def hot_error(request: Request, exc: Exception) -> Response:
    """A hot route's refusal as the app renders it: a :class:`GatewayHTTPError` by
    :func:`error_response`; anything else logged once with its traceback (the request's method
    and path, nothing of its headers or body) and answered by :func:`internal_error_response`."""
    if isinstance(exc, GatewayHTTPError):
        return error_response(exc)
    logger.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return internal_error_response()


async def billed_proxy(request: Request) -> Response:
    """``POST /v1/proxy/<billable route>``: route, per-IP bucket, global slot, capped body, then
    the billed request (the FastAPI route :func:`broker.provider.router.proxy`).

    Raises:
        GatewayHTTPError: the refusal of a check or of the billed request.
    """
    rt = await runtime(request)
    route = await proxy_route(request.scope["path"][len(PROXY_PREFIX) :])
    await ip_limit(request)
    async with _held_global_slot(request, None) as slot:
        body = await request_body(request)
        return await respond_billed(rt, request, route, slot, body)


#: ``/v1[/proxy]/async<route>`` → the billable route of the async job it creates.
_ASYNC_PATHS = {
    prefix + "/async" + route: route for route in ASYNC_ROUTES for prefix in ("/v1", "/v1/proxy")
}


async def billed_async_job(request: Request) -> Response:
    """``POST /v1[/proxy]/async/images/{generations,edits}``: per-IP bucket, global slot, capped
    body, then the async job (the FastAPI routes ``async_generate`` and ``async_edit``).

    Raises:
        GatewayHTTPError: the refusal of a check or of the billed request.
    """
    rt = await runtime(request)
    await ip_limit(request)
    async with _held_global_slot(request, None) as slot:
        body = await request_body(request)
        route = _ASYNC_PATHS[request.scope["path"]]
        return await respond_billed(rt, request, route, slot, body, async_job=True)


def _hot_routes() -> dict[tuple[str, str], Handler]:
    routes: dict[tuple[str, str], Handler] = {}
    for route in BILLABLE_ROUTES:
        for prefix in ("/v1/proxy", "/v1/proxy/v1"):
            routes["POST", prefix + route] = billed_proxy
    for path in _ASYNC_PATHS:
        routes["POST", path] = billed_async_job
    return routes


#: ``{(method, path): handler}`` for :class:`broker.asgi.hot_routes.HotRoutes`.
HOT_ROUTES: dict[tuple[str, str], Handler] = _hot_routes()
