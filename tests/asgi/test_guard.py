"""The ``LocalGuard`` middleware over a tiny ASGI app: the browser attacks it must refuse
(cross-origin simple POSTs, DNS rebinding, ``Sec-Fetch-Site: cross-site``, refused preflights) and
the clients it must let through unchanged (SDKs without ``Origin``, same-origin pages, listed
origins)."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from broker.asgi import (
    MULTIPART_TYPES,
    GuardConfigError,
    GuardRefusal,
    LocalGuard,
    is_loopback_host,
    split_list,
)

HITS: list[str] = []


async def _echo(request: Request) -> JSONResponse:
    HITS.append(f"{request.method} {request.url.path}")
    return JSONResponse({"ok": True}, headers={"Vary": "Accept-Encoding"})


async def _ws(ws: WebSocket) -> None:
    await ws.accept()
    await ws.send_text("hello")
    await ws.close()


def _app(**guard) -> LocalGuard:
    inner = Starlette(
        routes=[
            Route("/v1/chat", _echo, methods=["GET", "POST", "DELETE"]),
            Route("/v1/upload", _echo, methods=["POST"]),
            Route("/v1/account", _echo, methods=["GET"]),
            WebSocketRoute("/ws", _ws),
        ]
    )
    return LocalGuard(inner, content_types={"/v1/upload": MULTIPART_TYPES}, **guard)


def _client(app, base="http://127.0.0.1:3000") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base)


JSON = {"Content-Type": "application/json"}


@pytest.fixture(autouse=True)
def _clear_hits():
    HITS.clear()


async def test_sdk_style_requests_pass_unchanged():
    async with _client(_app()) as c:
        r = await c.post("/v1/chat", content=b"{}", headers=JSON)
        assert r.status_code == 200 and r.json() == {"ok": True}
        assert "access-control-allow-origin" not in r.headers
        r = await c.post(
            "/v1/chat", content=b"{}", headers={"Content-Type": "Application/JSON; charset=utf-8"}
        )
        assert r.status_code == 200
        assert (await c.get("/v1/account")).status_code == 200
        assert (await c.delete("/v1/chat")).status_code == 200  # no body: no type needed
        r = await c.post("/v1/upload", files={"image": ("a.png", b"x")})
        assert r.status_code == 200
    assert len(HITS) == 5


@pytest.mark.parametrize(
    "host",
    [
        "localhost:3000",
        "127.0.0.1",
        "127.8.9.1:80",
        "[::1]:3000",
        "LOCALHOST:1",
        "localhost.",
        "ui.localhost:3000",
        "[::ffff:127.0.0.1]:3000",
    ],
)
async def test_loopback_hosts_pass(host):
    async with _client(_app()) as c:
        r = await c.get("/v1/account", headers={"Host": host})
    assert r.status_code == 200, (host, r.text)


@pytest.mark.parametrize(
    "host",
    [
        "evil.example",
        "evil.example:3000",
        "127.0.0.1.evil.example",
        "localhost.evil.example",
        "0.0.0.0:3000",
        "[::2]:3000",
        "10.0.0.1",
        "local host",
        "[::1",
        "localhost:99999",
        "user@localhost",
        "",
    ],
)
async def test_dns_rebinding_host_refused(host):
    async with _client(_app()) as c:
        r = await c.get("/v1/account", headers={"Host": host})
    assert r.status_code == 403, (host, r.text)
    err = r.json()["error"]
    assert err["code"] == "host_not_allowed" and err["type"] == "permission_error"
    assert not HITS


async def test_allowed_hosts_by_name_port_and_star():
    app = _app(
        allowed_hosts=["broker.lan", "box:8080", "[fe80::1]"],
        hosts_hint="; list it in ZG_TEST_ALLOWED_HOSTS",
    )
    async with _client(app) as c:
        for host, status in [
            ("broker.lan", 200),
            ("BROKER.LAN:3000", 200),
            ("box:8080", 200),
            ("box:8081", 403),
            ("box", 403),
            ("[fe80::1]:1", 200),
        ]:
            r = await c.get("/v1/account", headers={"Host": host})
            assert r.status_code == status, host
        r = await c.get("/v1/account", headers={"Host": "other"})
        assert "ZG_TEST_ALLOWED_HOSTS" in r.json()["error"]["message"]
    async with _client(_app(allowed_hosts=["*"])) as c:
        assert (await c.get("/v1/account", headers={"Host": "anything"})).status_code == 200
        # "*" accepts the Host, but a page on that name is not thereby same-origin-trusted
        r = await c.get(
            "/v1/account",
            headers={"Host": "evil.example:3000", "Origin": "http://evil.example:3000"},
        )
        assert r.status_code == 403 and r.json()["error"]["code"] == "origin_not_allowed"


@pytest.mark.parametrize(
    "content_type",
    [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/jsonx",
        "application/json-patch+json",
        None,
    ],
)
async def test_simple_post_without_json_type_refused(content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    async with _client(_app()) as c:
        r = await c.post("/v1/chat", content=b'{"model":"m","n":4}', headers=headers)
    assert r.status_code == 415, content_type
    err = r.json()["error"]
    assert err["code"] == "unsupported_media_type" and "application/json" in err["message"]
    assert not HITS


async def test_multipart_route_takes_multipart_only():
    async with _client(_app()) as c:
        r = await c.post("/v1/upload", content=b"{}", headers=JSON)
        assert r.status_code == 415 and "multipart/form-data" in r.json()["error"]["message"]
        r = await c.post(
            "/v1/upload/",
            content=b"a=b",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 415
    assert not HITS


@pytest.mark.parametrize(
    "origin",
    [
        "https://evil.example",
        "http://localhost:5173",
        "http://127.0.0.1:3001",
        "null",
        "http://127.0.0.1:3000/x",
        "file://",
        "chrome-extension://abc",
        "garbage",
    ],
)
async def test_cross_origin_requests_refused(origin):
    async with _client(_app()) as c:
        r = await c.post("/v1/chat", content=b"{}", headers={**JSON, "Origin": origin})
        assert r.status_code == 403, origin
        assert r.json()["error"]["code"] == "origin_not_allowed"
        r = await c.get("/v1/account", headers={"Origin": origin})
        assert r.status_code == 403
        assert "access-control-allow-origin" not in r.headers
    assert not HITS


async def test_same_origin_loopback_page_passes_without_cors_headers():
    async with _client(_app()) as c:
        for origin in ("http://127.0.0.1:3000", "http://127.0.0.1:3000/"):
            r = await c.post(
                "/v1/chat",
                content=b"{}",
                headers={**JSON, "Origin": origin, "Sec-Fetch-Site": "same-origin"},
            )
            assert r.status_code == 200
            assert "access-control-allow-origin" not in r.headers
    async with _client(_app(), base="http://localhost") as c:
        r = await c.get("/v1/account", headers={"Origin": "http://localhost:80"})
        assert r.status_code == 200


async def test_listed_origin_gets_cors_headers():
    app = _app(
        allowed_origins=["http://localhost:5173", "https://dash.example"],
        expose_headers=["X-0G-Fee"],
    )
    async with _client(app) as c:
        r = await c.post(
            "/v1/chat",
            content=b"{}",
            headers={**JSON, "Origin": "http://localhost:5173", "Sec-Fetch-Site": "same-site"},
        )
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "http://localhost:5173"
        assert r.headers["access-control-expose-headers"] == "X-0G-Fee"
        assert r.headers["vary"] == "Accept-Encoding, Origin"
        r = await c.get(
            "/v1/account",
            headers={"Origin": "https://dash.example:443", "Sec-Fetch-Site": "cross-site"},
        )
        assert r.status_code == 200
        # a listed origin still has to send JSON (the CORS error is readable by that page)
        r = await c.post(
            "/v1/chat",
            content=b"{}",
            headers={"Origin": "https://dash.example", "Content-Type": "text/plain"},
        )
        assert r.status_code == 415
        assert r.headers["access-control-allow-origin"] == "https://dash.example"


async def test_sec_fetch_site_cross_site_refused_without_origin():
    async with _client(_app()) as c:
        r = await c.get(
            "/v1/account", headers={"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}
        )
        assert r.status_code == 403 and r.json()["error"]["code"] == "cross_site_request"
        for site in ("same-origin", "same-site", "none"):
            r = await c.get("/v1/account", headers={"Sec-Fetch-Site": site})
            assert r.status_code == 200, site


async def test_preflight_answers():
    app = _app(allowed_origins=["http://localhost:5173"])
    async with _client(app) as c:
        r = await c.options(
            "/v1/chat",
            headers={
                "Origin": "http://localhost:5173",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os",
            },
        )
        assert r.status_code == 204 and r.content == b""
        assert r.headers["access-control-allow-origin"] == "http://localhost:5173"
        assert "POST" in r.headers["access-control-allow-methods"]
        assert (
            r.headers["access-control-allow-headers"]
            == "authorization, content-type, x-stainless-os"
        )
        assert r.headers["access-control-max-age"] == "600"
        r = await c.options(
            "/v1/chat",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert r.status_code == 403 and "access-control-allow-origin" not in r.headers
        assert r.json()["error"]["code"] == "origin_not_allowed"
        # requested headers that are not a token list are not echoed
        r = await c.options(
            "/v1/chat",
            headers={
                "Origin": "http://localhost:5173",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "x\r\ny",
            },
        )
        assert r.status_code == 204 and "access-control-allow-headers" not in r.headers
        r = await c.options(
            "/v1/chat",
            headers={
                "Host": "evil.example",
                "Origin": "http://localhost:5173",
                "Access-Control-Request-Method": "POST",
            },
        )
        assert r.status_code == 403 and r.json()["error"]["code"] == "host_not_allowed"
    assert not HITS


async def test_error_body_is_pluggable_and_type_checks_can_be_off():
    def gateway_shape(refusal: GuardRefusal) -> dict:
        return {"error": refusal.message}

    app = _app(error_body=gateway_shape, enforce_content_types=False)
    async with _client(app) as c:
        r = await c.get("/v1/account", headers={"Host": "evil.example"})
        assert r.status_code == 403 and r.json()["error"].startswith("Host 'evil.example'")
        r = await c.post("/v1/chat", content=b"x", headers={"Content-Type": "text/plain"})
        assert r.status_code == 200


def test_websocket_checks():
    app = _app()
    local = {"Host": "127.0.0.1:3000"}
    with TestClient(app) as c:
        for extra in ({}, {"Origin": "http://127.0.0.1:3000"}):
            with c.websocket_connect("/ws", headers={**local, **extra}) as ws:
                assert ws.receive_text() == "hello"
        for bad in ({**local, "Origin": "https://evil.example"}, {"Host": "evil.example"}):
            with (
                pytest.raises(WebSocketDisconnect) as info,
                c.websocket_connect("/ws", headers=bad),
            ):
                pass
            assert info.value.code == 1008


@pytest.mark.parametrize(
    "kwargs",
    [
        {"allowed_origins": ["*"]},
        {"allowed_origins": ["null"]},
        {"allowed_origins": ["localhost:5173"]},
        {"allowed_origins": ["http://x.example/path"]},
        {"allowed_hosts": ["bad host"]},
        {"allowed_hosts": ["a:b"]},
    ],
)
def test_bad_configuration_is_a_typed_error(kwargs):
    with pytest.raises(GuardConfigError):
        _app(**kwargs)


def test_helpers():
    assert is_loopback_host("127.255.0.1") and is_loopback_host("::1")
    assert not is_loopback_host("localhost.evil") and not is_loopback_host("0.0.0.0")
    assert split_list("a, b,,c ") == ["a", "b", "c"]
    assert split_list('["x", "y"]') == ["x", "y"]
    assert split_list("") == [] and split_list(["z"]) == ["z"]
