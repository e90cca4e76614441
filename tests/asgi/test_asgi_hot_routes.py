"""``HotRoutes`` (:mod:`broker.asgi.hot_routes`, serve's chat route and the gateway's billed
routes) over a tiny Starlette app: only the exact ``(method, path)`` pairs reach their handler;
another method, another spelling of the path, a websocket and the lifespan go on to the app; a
handler's exception is answered by ``on_error`` (never a traceback or a hang)."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from broker.asgi import HotRoutes

SEEN: list[str] = []


async def _routed(request: Request) -> Response:
    SEEN.append(f"app {request.method} {request.url.path}")
    return PlainTextResponse("app")


async def _hot(request: Request) -> Response:
    SEEN.append(f"hot {request.method} {request.url.path}")
    body = await request.body()
    if body == b"boom":
        raise ValueError("refused")
    return JSONResponse({"hot": len(body)})


def _on_error(_request: Request, exc: Exception) -> Response:
    return JSONResponse({"error": str(exc)}, status_code=418)


def _app() -> HotRoutes:
    inner = Starlette(routes=[Route("/{path:path}", _routed, methods=["GET", "POST"])])
    return HotRoutes(inner, routes={("POST", "/v1/hot"): _hot}, on_error=_on_error)


@pytest.fixture(autouse=True)
def _clear():
    SEEN.clear()


async def test_only_exact_pairs_are_hot():
    transport = httpx.ASGITransport(app=_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
        assert (await c.post("/v1/hot", content=b"abc")).json() == {"hot": 3}
        assert (await c.get("/v1/hot")).text == "app"  # method mismatch
        assert (await c.post("/v1/hot/")).text == "app"  # another spelling
        assert (await c.post("/v1/hotter")).text == "app"
        refused = await c.post("/v1/hot", content=b"boom")
    assert refused.status_code == 418 and refused.json() == {"error": "refused"}
    assert SEEN == [
        "hot POST /v1/hot",
        "app GET /v1/hot",
        "app POST /v1/hot/",
        "app POST /v1/hotter",
        "hot POST /v1/hot",
    ]


async def test_other_scope_types_pass_through():
    got: list[str] = []

    async def inner(scope, receive, send):
        got.append(scope["type"])

    app = HotRoutes(inner, routes={("POST", "/v1/hot"): _hot}, on_error=_on_error)
    await app({"type": "lifespan"}, None, None)
    await app({"type": "websocket", "path": "/v1/hot"}, None, None)
    assert got == ["lifespan", "websocket"]
