"""``HotLaneFastAPI`` (:mod:`broker.asgi.hot_routes`), served by a real uvicorn on loopback: a hot
request skips FastAPI's outer layers but still goes through every middleware the app declares (in
the same order, with the same arguments), and so does every other request through the whole
stack; the lifespan runs; an error raised in a middleware on the hot lane is answered by the app's
``Exception`` handler (never a traceback); an app without ``HotRoutes`` is a plain FastAPI app."""

from __future__ import annotations

import httpx
from fastapi import Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from server_helpers import UvicornThread, free_port

from broker.asgi import HotRoutes
from broker.asgi.hot_routes import HotLaneFastAPI


class _Tag:
    """A middleware that records each request it sees (its own name) and can fail on demand."""

    def __init__(self, app, name: str, seen: list[str]) -> None:
        self.app, self.name, self.seen = app, name, seen

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http":
            self.seen.append(f"{self.name} {scope['path']}")
            if dict(scope["headers"]).get(b"x-fail") == self.name.encode():
                raise RuntimeError("a middleware failed (secret detail)")
        await self.app(scope, receive, send)


def _app(seen: list[str], *, hot: bool = True) -> HotLaneFastAPI:
    started: list[str] = []

    async def lifespan(app):
        started.append("up")
        yield

    app = HotLaneFastAPI(lifespan=lifespan)
    app.state.started = started

    async def hot_handler(request: Request) -> Response:
        seen.append("hot handler")
        return JSONResponse({"hot": len(await request.body())})

    @app.post("/v1/hot")
    async def routed_hot(request: Request) -> Response:  # the FastAPI route (schema)
        seen.append("routed handler")
        return PlainTextResponse("routed")

    @app.get("/other")
    async def other() -> Response:
        seen.append("other handler")
        return PlainTextResponse("other")

    async def internal(_request: Request, _exc: Exception) -> Response:
        return JSONResponse({"error": "internal"}, status_code=500)

    app.add_exception_handler(Exception, internal)

    def on_error(_request, exc):
        return JSONResponse({"error": str(exc)}, status_code=400)

    if hot:
        app.add_middleware(HotRoutes, routes={("POST", "/v1/hot"): hot_handler}, on_error=on_error)
    app.add_middleware(_Tag, name="inner", seen=seen)
    app.add_middleware(_Tag, name="outer", seen=seen)
    return app


def test_hot_requests_skip_fastapi_but_keep_the_app_middleware():
    seen: list[str] = []
    app = _app(seen)
    with UvicornThread(app, free_port()) as server:
        assert app.state.started == ["up"]  # the lifespan went to the whole stack
        r = httpx.post(server.url + "/v1/hot", content=b"abc")
        assert r.json() == {"hot": 3}
        assert seen == ["outer /v1/hot", "inner /v1/hot", "hot handler"]
        seen.clear()
        assert httpx.get(server.url + "/other").text == "other"
        assert httpx.get(server.url + "/v1/hot").status_code == 405  # not hot: FastAPI routing
        assert seen == [
            "outer /other",
            "inner /other",
            "other handler",
            "outer /v1/hot",
            "inner /v1/hot",
        ]
        seen.clear()
        # a middleware failing on the hot lane: the app's Exception handler answers, no detail
        r = httpx.post(server.url + "/v1/hot", content=b"x", headers={"x-fail": "inner"})
        assert r.status_code == 500 and r.json() == {"error": "internal"}
        assert "secret" not in r.text and "hot handler" not in seen
        # and the lane still serves afterwards
        assert httpx.post(server.url + "/v1/hot", content=b"ab").json() == {"hot": 2}


def test_without_hot_routes_it_is_a_plain_fastapi_app():
    seen: list[str] = []
    app = _app(seen, hot=False)
    with UvicornThread(app, free_port()) as server:
        assert httpx.post(server.url + "/v1/hot", content=b"abc").text == "routed"
    assert seen == ["outer /v1/hot", "inner /v1/hot", "routed handler"]
