"""The hot route served without FastAPI's routing: a pure-ASGI layer, inside serve's guards
(:class:`~broker.asgi.guard.LocalGuard`, the metrics and the dashboard's request log, which all
still see every request), that hands ``POST /v1/chat/completions`` straight to its handler.

What it skips on that one route is per-request machinery the handler does not use: FastAPI's body
limit and telemetry layers, the exception middleware, the ``AsyncExitStack`` layer, route matching
over every route, and dependency solving. The route keeps its behaviour: the same API-key check
(:func:`broker.proxy.router.require_api_key`), the same handler and the same error shapes (the
app's error renderer). Every other request goes on to the FastAPI app unchanged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

__all__ = ["HotRoutes"]

Handler = Callable[[Request], Awaitable[Response]]


class HotRoutes:
    """Pure ASGI middleware that serves a few ``(method, path)`` pairs itself.

    Args:
        app: the rest of the ASGI stack.
        routes: ``{(method, path): handler}``; a handler takes the request and returns the
            response (an exception it raises goes to ``on_error``).
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
