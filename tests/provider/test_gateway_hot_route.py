"""The gateway's billed ``POST`` routes served as pure ASGI (:mod:`broker.provider.hot_route`,
issue #11) refuse exactly what the FastAPI route refuses, with the same status, ``{"error": ...}``
body and headers, and serve what it serves; every other request still reaches the FastAPI app.

Each refusal is sent twice: to the hot path (``/v1/proxy/chat/completions``) and to a spelling
only the FastAPI route serves (``/v1/proxy/chat/completions/``, the same billable route after
:func:`~broker.provider.forward.normalise_route`). An outer recorder notes which requests
Starlette's router matched (it writes the route's ``endpoint`` into the scope), so each test also
shows which path answered.

Real parts: the session ``devnet``, a registered chatbot service, a real uvicorn gateway built by
``build_gateway`` / ``create_app`` and a small chat backend on loopback, a real SQLite file.
"""

from __future__ import annotations

import json
import logging
import socket
import sqlite3

import httpx
import pytest
from devnet_helpers import devnet_gateway_settings, register_acknowledged_service
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from server_helpers import UvicornThread, free_port

from broker.chain.connection import connect
from broker.chain.contracts import LedgerManagerContract
from broker.chain.sender import TransactionSender
from broker.inference.token_issuing import new_session_token
from broker.provider.app import create_app
from broker.provider.errors import RateLimitedError
from broker.provider.hot_route import HOT_ROUTES, hot_error
from broker.provider.limits import GLOBAL_MESSAGE, IP_MESSAGE
from broker.provider.serve import UVICORN_OPTIONS, build_gateway
from broker.provider.tee import LocalTeeSigner
from broker.wire.session_token import authorization_header, sign_session_token

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ZG = 10**18
CAP = 1 << 20  # max_body_bytes
HOT = "/v1/proxy/chat/completions"
ROUTED = HOT + "/"  # the same billable route, through FastAPI's routing
ANSWER = {
    "id": "chatcmpl-hot",
    "object": "chat.completion",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi there"}}],
    "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
}


def _chat_backend() -> FastAPI:
    app = FastAPI()

    @app.post("/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        if not body.get("stream"):
            return ANSWER

        async def events():
            yield b'data: {"id":"chatcmpl-s","choices":[{"index":0,"delta":{"content":"a b"}}]}\n\n'
            usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
            last = {"id": "chatcmpl-s", "choices": [], "usage": usage}
            yield f"data: {json.dumps(last)}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


class _Recorder:
    """ASGI wrapper noting ``(method, path, routed)`` of each HTTP request: ``routed`` when
    Starlette's router matched it (the router writes ``endpoint`` into the scope)."""

    def __init__(self, app) -> None:
        self.app = app
        self.seen: list[tuple[str, str, bool]] = []

    async def __call__(self, scope, receive, send) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            if scope["type"] == "http":
                self.seen.append((scope["method"], scope["path"], "endpoint" in scope))


@pytest.fixture(scope="module")
def world(devnet, tmp_path_factory):
    from broker.devnet import fund_new_account

    tmp = tmp_path_factory.mktemp("hot")
    provider = fund_new_account(devnet, amount_neuron=1000 * ZG)
    w3 = connect(devnet.rpc_url)
    port = free_port()
    settings = devnet_gateway_settings(
        devnet,
        provider,
        tmp,
        port=port,
        tee_signer_key="0x" + "44" * 32,
        model="hot-model",
        input_price=10**9,
        output_price=2 * 10**9,
        max_body_bytes=CAP,
        trusted_proxies="127.0.0.2/32",
    )
    signer = LocalTeeSigner(bytes.fromhex("44" * 32))
    register_acknowledged_service(devnet, provider, settings, signer.address)
    with UvicornThread(_chat_backend(), free_port()) as backend:
        settings = settings.model_copy(update={"target_url": backend.url})
        gw = build_gateway(settings, signer=signer, with_scheduler=False)
        recorder = _Recorder(create_app(gw))
        with UvicornThread(recorder, port, **UVICORN_OPTIONS) as server:
            yield {
                "gw": gw,
                "url": server.url,
                "port": port,
                "rec": recorder,
                "w3": w3,
                "devnet": devnet,
                "provider": provider,
            }
        gw.db.dispose()


def _fresh_ip_bucket(gw, burst: int = 1000) -> None:
    gw.limits.ip = type(gw.limits.ip)(0.001, burst)


def _funded_header(world, user) -> dict[str, str]:
    w3 = world["w3"]
    ledger = LedgerManagerContract(w3, world["devnet"].ledger_address, TransactionSender(w3, user))
    ledger.add_ledger("", 10 * ZG)
    ledger.transfer_fund(world["provider"].address, "inference-v1.0", 5 * ZG)
    tok = new_session_token(user.address, world["provider"].address)
    return {"Authorization": authorization_header(sign_session_token(tok, user))}


def _same_refusal(a: httpx.Response, b: httpx.Response) -> None:
    assert a.status_code == b.status_code
    assert a.json() == b.json() and set(a.json()) == {"error"}
    for name in ("content-type", "retry-after", "access-control-allow-origin"):
        assert a.headers.get(name) == b.headers.get(name), name


def _both(world, **kw) -> tuple[httpx.Response, httpx.Response]:
    """The same request to the hot path and to the routed spelling; checks which answered."""
    rec = world["rec"]
    rec.seen.clear()
    with httpx.Client(base_url=world["url"], timeout=10) as c:
        hot = c.post(HOT, **kw)
        routed = c.post(ROUTED, **kw)
    assert rec.seen == [("POST", HOT, False), ("POST", ROUTED, True)]
    return hot, routed


def test_auth_refusals_are_the_same(world):
    _fresh_ip_bucket(world["gw"])
    body = {"model": "hot-model", "messages": [{"role": "user", "content": "hi"}]}
    for headers in (
        {},
        {"Authorization": "Bearer app-sk-forged"},
        {"Authorization": "Bearer app-sk-" + "A" * 300},
        {"Authorization": "Basic dXNlcjpwYXNz"},
    ):
        hot, routed = _both(world, json=body, headers={**headers, "Origin": "https://x.example"})
        assert hot.status_code == 400, hot.text
        assert hot.json()["error"].startswith("validate session: ")
        assert hot.headers["access-control-allow-origin"] == "https://x.example"  # CORS still on
        _same_refusal(hot, routed)
    assert world["gw"].limits.global_inflight.count() == 0  # every slot given back


def test_async_job_routes_are_hot_and_checked(world):
    """The async image job routes (per-IP bucket, global slot, capped body, then the route and
    the token) are hot too; this chatbot gateway serves no image jobs (its fee rule cannot bill
    them)."""
    _fresh_ip_bucket(world["gw"])
    rec = world["rec"]
    rec.seen.clear()
    paths = ("/v1/async/images/generations", "/v1/proxy/async/images/edits")
    with httpx.Client(base_url=world["url"], timeout=10) as c:
        for path in paths:
            r = c.post(path, json={"prompt": "x"})
            assert r.status_code == 400
            assert r.json() == {"error": "unsupported endpoint: endpoint not supported"}
        big = c.post(paths[0], content=b"x" * (CAP + 1))
        assert big.status_code == 413
    assert rec.seen == [("POST", path, False) for path in (*paths, paths[0])]
    assert world["gw"].limits.global_inflight.count() == 0


def test_bad_bodies_are_refused_the_same(world):
    _fresh_ip_bucket(world["gw"])
    for kw in (
        {"content": b"{not json", "headers": {"Content-Type": "application/json"}},
        {"content": b"[" * 5000 + b"]" * 5000, "headers": {"Content-Type": "application/json"}},
        {"content": b'{"model": "m", "n": 1e999}', "headers": {"Content-Type": "application/json"}},
    ):
        hot, routed = _both(world, **kw)
        assert hot.status_code == 400, hot.text
        _same_refusal(hot, routed)


def test_oversized_body_is_refused_before_it_is_read(world):
    _fresh_ip_bucket(world["gw"])
    hot, routed = _both(world, content=b"x" * (CAP + 1))  # a known length over the cap
    assert hot.status_code == 413
    assert hot.json() == {"error": "Request body size exceeds the maximum allowed size of 1MB"}
    _same_refusal(hot, routed)

    class Chunked:  # no Content-Length (chunked), sent once to each path
        def __iter__(self):
            return iter([b"y" * 65536] * (CAP // 65536 + 2))

    hot, routed = _both(world, content=Chunked())
    _same_refusal(hot, routed)
    assert hot.status_code == 413
    # a 100 MB Content-Length with 10 bytes sent: the answer comes without waiting for the rest
    for path in (HOT, ROUTED):
        with socket.create_connection(("127.0.0.1", world["port"]), timeout=5) as s:
            s.sendall(
                f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                f"Content-Length: {100 << 20}\r\n\r\n0123456789".encode()
            )
            head = s.recv(4096).decode("latin-1")
        assert head.startswith("HTTP/1.1 413 "), head
    assert world["gw"].limits.global_inflight.count() == 0


def test_rate_limits_are_the_same(world):
    gw = world["gw"]
    spoofed = {"X-Forwarded-For": "198.51.100.7", "X-Real-IP": "203.0.113.9"}
    for path in (HOT, ROUTED):
        _fresh_ip_bucket(gw, burst=2)
        with httpx.Client(base_url=world["url"], timeout=10) as c:
            codes = [c.post(path, json={}, headers=spoofed).status_code for _ in range(4)]
            refused = c.post(path, json={})
        # the bucket is the peer's: X-Forwarded-For from an untrusted peer names no one
        assert codes == [400, 400, 429, 429], (path, codes)
        assert refused.status_code == 429 and refused.json() == {"error": IP_MESSAGE}
        assert int(refused.headers["retry-after"]) >= 1
    # a full global in-flight cap: 503 with Retry-After 1, on both paths, before the body is read
    _fresh_ip_bucket(gw)
    taken = 0
    try:
        while gw.limits.global_inflight.count() < gw.limits.global_inflight.limit:
            gw.limits.enter_global()
            taken += 1
        hot, routed = _both(world, json={})
    finally:
        for _ in range(taken):
            gw.limits.leave_global()
    assert hot.status_code == 503 and hot.json() == {"error": GLOBAL_MESSAGE}
    assert hot.headers["retry-after"] == "1"
    _same_refusal(hot, routed)


def test_other_requests_reach_the_app(world):
    """Another method, a free or unknown ``/v1/proxy`` route, and the OpenAPI document are the
    FastAPI app's; a foreign ``Host`` changes nothing (the gateway has no host list)."""
    _fresh_ip_bucket(world["gw"])
    rec = world["rec"]
    rec.seen.clear()
    with httpx.Client(base_url=world["url"], timeout=10) as c:
        got = c.get(HOT)  # method mismatch: FastAPI's catch-all route answers (the token check)
        assert got.status_code == 400 and got.json()["error"].startswith("validate session: ")
        assert c.post("/v1/proxy/nope", json={}).json() == {
            "error": "unsupported endpoint: endpoint not supported"
        }
        paths = c.get("/openapi.json").json()["paths"]
        assert "/v1/proxy/{path}" in paths and "post" in paths["/v1/proxy/{path}"]
        foreign = c.post(HOT, json={}, headers={"Host": "evil.example"})
        assert foreign.status_code == 400
    assert rec.seen[:2] == [("GET", HOT, True), ("POST", "/v1/proxy/nope", True)]
    assert rec.seen[-1] == ("POST", HOT, False)
    assert ("POST", "/v1/proxy/v1/chat/completions") in HOT_ROUTES
    assert ("POST", "/v1/proxy/async/images/generations") in HOT_ROUTES
    assert ("GET", HOT) not in HOT_ROUTES


def test_billed_answers_through_the_hot_path(world, fresh_account):
    gw = world["gw"]
    _fresh_ip_bucket(gw)
    headers = _funded_header(world, fresh_account)
    rec = world["rec"]
    rec.seen.clear()
    body = {"model": "hot-model", "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(base_url=world["url"], timeout=30) as c:
        r = c.post(HOT, json=body, headers=headers)
        assert r.status_code == 200, r.text
        assert r.json() == ANSWER
        assert r.headers["zg-res-signature"].startswith("0x")
        assert r.headers["provider"] == world["provider"].address
        chat_id = r.headers["zg-res-key"]
        # stored under the gateway's id and the completion's id (the body parsed for both)
        assert gw.signatures.get(chat_id).signature == r.headers["zg-res-signature"]
        assert gw.signatures.get("chatcmpl-hot").signature == r.headers["zg-res-signature"]
        fee_after_one = gw.ledger.unsettled_fee(fresh_account.address)
        assert fee_after_one == 7 * 10**9 + 3 * 2 * 10**9
        with c.stream("POST", HOT, json={**body, "stream": True}, headers=headers) as s:
            assert s.status_code == 200
            assert s.headers["content-type"].startswith("text/event-stream")
            assert "zg-res-signature" not in s.headers
            streamed = b"".join(s.iter_bytes())
        assert streamed.endswith(b"data: [DONE]\n\n")
        routed = c.post(ROUTED, json=body, headers=headers)
        assert routed.status_code == 200 and routed.json() == ANSWER
    assert [hot for _m, _p, hot in rec.seen] == [False, False, True]
    assert gw.ledger.unsettled_fee(fresh_account.address) == 2 * fee_after_one + (
        5 * 10**9 + 2 * 2 * 10**9
    )
    assert gw.limits.global_inflight.count() == 0


def test_hot_error_renders_the_app_shape():
    refused = hot_error(None, RateLimitedError("slow down", retry_after=3))
    assert (refused.status_code, refused.body) == (429, b'{"error":"slow down"}')
    assert refused.headers["retry-after"] == "3"


@pytest.fixture()
def error_logs(caplog):
    """ERROR records of the gateway's loggers and of uvicorn's (which does not propagate)."""
    server_log = logging.getLogger("uvicorn.error")
    server_log.addHandler(caplog.handler)
    caplog.set_level(logging.ERROR)
    try:
        yield lambda: [r for r in caplog.records if r.levelno >= logging.ERROR]
    finally:
        server_log.removeHandler(caplog.handler)


def test_an_unexpected_error_answers_500_in_the_gateway_shape(world, fresh_account, error_logs):
    """Attack: the database breaks under the gateway (another connection renames its request
    table), so a billed request meets an error no code path expects. The client gets 500
    ``{"error": "internal server error"}`` as JSON from the hot path and from FastAPI's route
    alike, nothing of the error (type, SQL, table, traceback); the server logs it once, with its
    traceback; no slot is kept; once the table is back, requests are served again."""
    gw = world["gw"]
    _fresh_ip_bucket(gw)
    headers = _funded_header(world, fresh_account)
    body = {"model": "hot-model", "messages": [{"role": "user", "content": "hi"}]}
    db_path = gw.db.engine.url.database
    broken = sqlite3.connect(db_path, isolation_level=None)
    broken.execute("ALTER TABLE requests RENAME TO requests_away")
    try:
        for path, hot in ((HOT, True), (ROUTED, False)):
            before = len(error_logs())
            with httpx.Client(base_url=world["url"], timeout=30) as c:
                r = c.post(path, json=body, headers={**headers, "Origin": "https://x.example"})
            assert r.status_code == 500, r.text
            assert r.headers["content-type"] == "application/json"
            assert r.json() == {"error": "internal server error"}
            for leak in ("requests", "sqlite", "Traceback", "OperationalError", "SELECT"):
                assert leak not in r.text
            logged = error_logs()[before:]
            assert len(logged) == 1, [rec.getMessage() for rec in logged]
            record = logged[0]
            assert record.exc_info is not None and "no such table" in str(record.exc_info[1])
            if hot:
                assert record.name == "broker.provider.hot_route"
                assert record.getMessage() == f"unexpected error on POST {HOT}"
                assert r.headers["access-control-allow-origin"] == "https://x.example"
    finally:
        broken.execute("ALTER TABLE requests_away RENAME TO requests")
        broken.close()
    assert gw.limits.global_inflight.count() == 0
    assert gw.limits.user_inflight.count(fresh_account.address.lower()) == 0
    with httpx.Client(base_url=world["url"], timeout=30) as c:
        r = c.post(HOT, json=body, headers=headers)
    assert r.status_code == 200, r.text
