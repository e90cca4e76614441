"""The hot route served without FastAPI's routing: a pure-ASGI layer, inside serve's guards
(:class:`~broker.asgi.guard.LocalGuard`, the metrics and the dashboard's request log, which all
still see every request), that hands ``POST /v1/chat/completions`` straight to its handler.

What it skips on that one route is per-request machinery the handler does not use: FastAPI's body
limit and telemetry layers, the exception middleware, the ``AsyncExitStack`` layer, route matching
over every route, and dependency solving. The route keeps its behaviour: the same API-key check
(:func:`broker.proxy.router.require_api_key`), the same handler and the same error shapes (the
app's error renderer). Every other request goes on to the FastAPI app unchanged. The layer is
:class:`broker.asgi.hot_routes.HotRoutes`, shared with the gateway.
"""

from __future__ import annotations

from broker.asgi.hot_routes import HotLaneFastAPI, HotRoutes

__all__ = ["HotLaneFastAPI", "HotRoutes"]
