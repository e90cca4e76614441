"""FastAPI dependencies of the gateway's routes (``provider-gateway.md`` B3, B6).

The checks every route would otherwise call by hand, in the order a request meets them: the
per-IP bucket (:func:`ip_limit`), the global in-flight slot (:func:`global_slot`), the capped body
(:func:`request_body`) and, on the free routes that need one, the authenticated user
(:func:`authenticated_user`). FastAPI runs a route's ``dependencies=[...]`` first, then its
parameters' dependencies in their order, each once per request. Every dependency is ``async``
(FastAPI would run a plain ``def`` in a worker thread): none blocks, and the token check, which
does, makes its own thread hop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from broker.asgi.body import read_capped_body
from broker.asgi.errors import RequestBodyTooLargeError
from broker.provider.errors import BodyTooLargeError, GatewayHTTPError, UnsupportedEndpointError
from broker.provider.forward import (
    BILLABLE_ROUTES,
    FREE_PREFIXES,
    is_plain_route,
    normalise_route,
)
from broker.provider.limits import Limits
from broker.provider.runtime import GatewayRuntime
from broker.wire.job_id import is_valid_job_id

__all__ = [
    "AuthenticatedUser",
    "GlobalSlot",
    "HeldSlot",
    "JobId",
    "ProxyRoute",
    "RequestBody",
    "Runtime",
    "authenticated_user",
    "body_too_large_message",
    "global_slot",
    "ip_limit",
    "proxy_route",
    "request_body",
    "runtime",
    "valid_job_id",
]


def _runtime(request: Request) -> GatewayRuntime:
    return request.app.state.gateway


async def runtime(request: Request) -> GatewayRuntime:
    """The app's :class:`GatewayRuntime` (``app.state.gateway``)."""
    return _runtime(request)


async def ip_limit(request: Request) -> None:
    """The per-IP bucket of B6: ``/v1/proxy/*`` and the other ``/v1`` routes have separate ones,
    keyed on :meth:`Limits.client_ip` (``X-Forwarded-For`` only from trusted proxies).

    Raises:
        RateLimitedError: 429 with ``Retry-After`` when the IP's bucket is empty.
    """
    limits = _runtime(request).gw.limits
    peer = limits.client_ip(request.headers, request.client and request.client.host)
    if request.scope["path"].startswith("/v1/proxy/"):  # the path as routed (no URL to build)
        limits.check_ip(peer)
    else:
        limits.check_handler_ip(peer)


async def proxy_route(path: str) -> str:
    """The route of a ``/v1/proxy/{path}`` request (:func:`normalise_route`), when it is served:
    billable (:data:`BILLABLE_ROUTES`) or free (:data:`FREE_PREFIXES`, a plain route:
    :func:`is_plain_route`, so that no ``..`` leads out of the free prefix).

    Raises:
        UnsupportedEndpointError: 400 for any other route (before any limit is spent).
    """
    route = normalise_route(path)
    if route in BILLABLE_ROUTES:
        return route
    if route.startswith(FREE_PREFIXES) and is_plain_route(route):  # no ``..`` out of the prefix
        return route
    raise UnsupportedEndpointError()


class GlobalSlot:
    """One held slot of the global in-flight cap (B6). Released when the route returns, unless a
    stream took it over with :meth:`hold_until`.

    Args:
        limits: the gateway's limits (the slot is already taken).
    """

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._held = True

    def hold_until(self, task: asyncio.Task) -> None:
        """Keep the slot until ``task`` (a stream's pump) is done, then release it."""
        self._held = False
        task.add_done_callback(lambda _t: self._limits.leave_global())

    def release(self) -> None:
        """Release the slot now (once; nothing when a stream holds it)."""
        if self._held:
            self._held = False
            self._limits.leave_global()


async def global_slot(
    request: Request, _ip: Annotated[None, Depends(ip_limit)]
) -> AsyncIterator[GlobalSlot]:
    """After the per-IP bucket: a slot of the global in-flight cap for the route's run (B6).

    Yields:
        The held :class:`GlobalSlot`; released when the route returns or raises.

    Raises:
        OverloadedError: 503 with ``Retry-After: 1`` when every slot is taken.
    """
    limits = _runtime(request).gw.limits
    limits.enter_global()
    slot = GlobalSlot(limits)
    try:
        yield slot
    finally:
        slot.release()


def body_too_large_message(cap: int) -> str:
    """The gateway's 413 text for a body cap of ``cap`` bytes (the Go broker's wording)."""
    return f"Request body size exceeds the maximum allowed size of {cap >> 20}MB"


async def request_body(request: Request) -> bytes:
    """The request body, at most ``max_body_bytes`` (:func:`broker.asgi.body.read_capped_body`).

    Raises:
        BodyTooLargeError: 413 with :func:`body_too_large_message`.
    """
    cap = _runtime(request).settings.max_body_bytes
    try:
        return await read_capped_body(request, cap)
    except RequestBodyTooLargeError:
        raise BodyTooLargeError(body_too_large_message(cap)) from None


async def authenticated_user(request: Request, _ip: Annotated[None, Depends(ip_limit)]) -> str:
    """After the per-IP bucket: the user of the request's session token (B3), checked in a
    worker thread.

    Returns:
        The user's address as the token names it.

    Raises:
        SessionValidationError: 400 ``validate session: ...``.
    """
    auth = _runtime(request).gw.auth
    header = request.headers.get("authorization")
    user = auth.authenticate_cached(header)  # a token verified before: no I/O, no thread
    return user if user is not None else await run_in_threadpool(auth.authenticate, header)


async def valid_job_id(job_id: str) -> str:
    """``job_id`` when it has the shape of a job id (:func:`broker.wire.job_id.is_valid_job_id`).

    Raises:
        GatewayHTTPError: 404 ``job not found`` (before the token is checked).
    """
    if not is_valid_job_id(job_id):
        raise GatewayHTTPError("job not found", status_code=404)
    return job_id


#: Handler parameter types (``Annotated`` with their dependency).
Runtime = Annotated[GatewayRuntime, Depends(runtime)]
AuthenticatedUser = Annotated[str, Depends(authenticated_user)]
ProxyRoute = Annotated[str, Depends(proxy_route)]
RequestBody = Annotated[bytes, Depends(request_body)]
JobId = Annotated[str, Depends(valid_job_id)]
#: The global slot, held for the handler's run only (released before the response is sent; a
#: stream takes it over with :meth:`GlobalSlot.hold_until`).
HeldSlot = Annotated[GlobalSlot, Depends(global_slot, scope="function")]
