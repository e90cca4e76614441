"""Hot routes served without FastAPI's routing: one pure-ASGI layer that hands a few exact
``(method, path)`` pairs straight to their handler, used by ``serve`` (its chat route,
:mod:`broker.proxy.hot_routes`) and the gateway (its billed routes,
:mod:`broker.provider.hot_route`).

What a hot route skips is per-request machinery its handler does not use: FastAPI's body limit and
telemetry layers, the exception middleware, the ``AsyncExitStack`` layer, route matching over every
route, and dependency solving. The handler runs the route's checks itself (the same functions the
FastAPI route declares as dependencies) and the server renders its errors in its own shape
(``on_error``). The layer goes inside the server's other middleware (guards, CORS, metrics), which
still see every request; every other request goes on to the FastAPI app unchanged, and the FastAPI
route stays for the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

__all__ = ["Handler", "HotRoutes"]

#: A hot route's handler: the request in, the response out (raises to refuse).
Handler = Callable[[Request], Awaitable[Response]]


class HotRoutes:
    """Pure ASGI middleware that serves a few ``(method, path)`` pairs itself.

    Args:
        app: the rest of the ASGI stack.
        routes: ``{(method, path): handler}`` (exact method and decoded path); a handler takes the
            request and returns the response (an exception it raises goes to ``on_error``).
        on_error: ``(request, exception) -> response`` in the API's error shape (never raises).
    """

    def __init__(
        self,
        app: Any,
        routes: dict[tuple[str, str], Handler],
        on_error: Callable[[Request, Exception], Response],
    ) -> None:
        self.app = app
        self.routes = routes
        self.on_error = on_error

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        handler = (
            self.routes.get((scope["method"], scope["path"])) if scope["type"] == "http" else None
        )
        if handler is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive, send)
        try:
            response = await handler(request)
        except Exception as exc:  # noqa: BLE001 - rendered in the API's shape by on_error
            response = self.on_error(request, exc)
        await response(scope, receive, send)
