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

An app built as :class:`HotLaneFastAPI` also lets its hot routes skip FastAPI's outer layers (its
telemetry and body-limit layers, which serve and the gateway do not use): a hot request goes
through a second copy of the app's own middleware (the same classes and arguments, so the same
guards, metrics and logs) behind Starlette's server-error layer, and every other request through
the whole FastAPI stack.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp

__all__ = ["Handler", "HotLaneFastAPI", "HotRoutes"]

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


class _HotDispatch:
    """Hot ``(method, path)`` pairs to ``lane``, everything else (lifespan included) to ``full``."""

    def __init__(self, full: ASGIApp, lane: ASGIApp, keys: frozenset[tuple[str, str]]) -> None:
        self.full, self.lane, self.keys = full, lane, keys

    async def __call__(self, scope, receive, send) -> None:  # type: ignore[no-untyped-def]
        if scope["type"] == "http" and (scope["method"], scope["path"]) in self.keys:
            await self.lane(scope, receive, send)
        else:
            await self.full(scope, receive, send)


class HotLaneFastAPI(FastAPI):
    """A FastAPI app whose :class:`HotRoutes` routes skip FastAPI's outer layers (module
    docstring). Without a :class:`HotRoutes` middleware it is a plain FastAPI app.

    Each middleware added with ``add_middleware`` is built twice (once for each lane), from the
    same class and arguments: a middleware must keep what it counts or records in an object passed
    as an argument (a metrics registry, a request log), not on its own instance, or the two lanes
    would each see only their share of the requests.
    """

    def build_middleware_stack(self) -> ASGIApp:
        """The whole stack, with a lane for the hot routes in front of it."""
        full = super().build_middleware_stack()
        hot = [m for m in self.user_middleware if m.cls is HotRoutes]
        if not hot:
            return full
        lane: ASGIApp = self.router  # not reached: HotRoutes answers every hot request itself
        for cls, args, kwargs in reversed(self.user_middleware):
            lane = cls(lane, *args, **kwargs)
        handler = self.exception_handlers.get(500) or self.exception_handlers.get(Exception)
        lane = ServerErrorMiddleware(lane, handler=handler, debug=self.debug)
        return _HotDispatch(full, lane, frozenset(hot[0].kwargs["routes"]))
