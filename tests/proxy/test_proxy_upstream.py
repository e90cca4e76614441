"""serve's connection to the provider (:class:`broker.proxy.upstream.Upstream`, an aiohttp session)
against a real loopback server: raw bytes kept (the signature covers them), streamed chunks handed
on as they arrive, the family timeout and an unreachable provider mapped to 504 / 502, one
keep-alive connection reused, 60 requests in flight at once, bodies sent byte for byte, and
repeated headers joined; the signature fetches over the same session."""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import threading
import time

import httpx
import pytest
from proxy_helpers import ThreadServer, free_port
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from broker.proxy import ServeSettings
from broker.proxy.errors import UpstreamTimeoutError, UpstreamUnavailableError
from broker.proxy.upstream import (
    TRANSPORT_ERRORS,
    SignatureClient,
    Upstream,
    error_from_upstream,
    passthrough_headers,
)

pytestmark = pytest.mark.timeout(60)

GZIPPED = gzip.compress(b'{"id":"chatcmpl-1","usage":{"total_tokens":3}}', mtime=0)
RELEASE = threading.Event()  # lets the streaming backend send its second event
PEERS: list[tuple[str, int]] = []
IN_FLIGHT = {"now": 0, "max": 0}


async def _compressed(request: Request) -> Response:
    return Response(GZIPPED, headers={"Content-Encoding": "gzip"}, media_type="application/json")


async def _stream(request: Request) -> StreamingResponse:
    async def events():
        yield b'data: {"n":1}\n\n'
        deadline = time.monotonic() + 10
        while not RELEASE.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        yield b'data: {"n":2}\n\ndata: [DONE]\n\n'

    return StreamingResponse(events(), media_type="text/event-stream")


async def _slow(request: Request) -> Response:
    await asyncio.sleep(float(request.query_params.get("s", "3")))
    return JSONResponse({"late": True})


async def _stall(request: Request) -> StreamingResponse:
    async def events():
        yield b'data: {"n":1}\n\n'
        await asyncio.sleep(3)
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


async def _echo(request: Request) -> Response:
    body = await request.body()
    PEERS.append(request.client)
    return JSONResponse(
        {
            "sha256": hashlib.sha256(body).hexdigest(),
            "content_type": request.headers.get("content-type"),
            "accept_encoding": request.headers.get("accept-encoding"),
            "query": dict(request.query_params),
        },
        headers={"X-Rate": "a", "Retry-After": "7"},
    )


async def _repeated(request: Request) -> Response:
    response = Response(b"{}", media_type="application/json")
    response.raw_headers += [(b"x-multi", b"one"), (b"x-multi", b"two")]
    return response


async def _crowd(request: Request) -> Response:
    IN_FLIGHT["now"] += 1
    IN_FLIGHT["max"] = max(IN_FLIGHT["max"], IN_FLIGHT["now"])
    deadline = time.monotonic() + 10
    while IN_FLIGHT["max"] < 60 and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    IN_FLIGHT["now"] -= 1
    return JSONResponse({"together": IN_FLIGHT["max"]})


async def _signature(request: Request) -> Response:
    doc = b'{"text":"t","signature":"0xs"}'
    return Response(
        gzip.compress(doc, mtime=0),
        status_code=429 if request.path_params["chat_id"] == "busy" else 200,
        headers={"Content-Encoding": "gzip", "Retry-After": "2"},
        media_type="application/json",
    )


BACKEND = Starlette(
    routes=[
        Route("/v1/proxy/compressed", _compressed),
        Route("/v1/proxy/stream", _stream),
        Route("/v1/proxy/slow", _slow),
        Route("/v1/proxy/stall", _stall),
        Route("/v1/proxy/echo", _echo, methods=["GET", "POST"]),
        Route("/v1/proxy/repeated", _repeated),
        Route("/v1/proxy/crowd", _crowd),
        Route("/v1/proxy/signature/{chat_id}", _signature),
    ]
)


@pytest.fixture(scope="module")
def backend():
    with ThreadServer(BACKEND) as url:
        yield url


def _settings(**overrides) -> ServeSettings:
    return ServeSettings(provider="0x" + "1" * 40, **overrides)


async def _upstream(url: str, **overrides) -> Upstream:
    # created on the running loop, as serve's lifespan does
    return Upstream(None, "0x" + "1" * 40, url, _settings(**overrides))  # type: ignore[arg-type]


async def test_compressed_body_is_kept_raw_for_the_hash_and_decoded_for_the_client(backend):
    up = await _upstream(backend)
    try:
        response = await up.send("GET", "/compressed", authenticated=False)
        assert response.headers["content-encoding"] == "gzip"
        assert await up.read_raw(response) == GZIPPED  # what the signature covers
        response = await up.send("GET", "/compressed", authenticated=False)
        assert await up.read(response) == gzip.decompress(GZIPPED)
    finally:
        await up.aclose()


async def test_a_streamed_event_is_handed_on_before_the_next_one_is_sent(backend):
    RELEASE.clear()
    up = await _upstream(backend)
    try:
        response = await up.send("GET", "/stream", family="chat", authenticated=False)
        chunks = response.aiter_raw()
        first = await asyncio.wait_for(chunks.__anext__(), 5)
        # the backend holds its second event until this point: the first arrived on its own
        assert first == b'data: {"n":1}\n\n'
        RELEASE.set()
        rest = b"".join([chunk async for chunk in chunks])
        assert rest == b'data: {"n":2}\n\ndata: [DONE]\n\n'
        await response.aclose()
    finally:
        RELEASE.set()
        await up.aclose()


async def test_the_family_timeout_is_a_504_and_a_silent_stream_breaks_off(backend):
    up = await _upstream(backend, chat_timeout=0.5, images_timeout=5)
    try:
        started = time.monotonic()
        with pytest.raises(UpstreamTimeoutError) as caught:
            await up.send("GET", "/slow", family="chat", authenticated=False)
        assert caught.value.status_code == 504 and caught.value.code == "upstream_timeout"
        assert "0.5 s" in caught.value.message and time.monotonic() - started < 2.5
        # another family keeps its own (longer) timeout
        ok = await up.send("GET", "/slow", family="images", params={"s": "1"}, authenticated=False)
        assert ok.status_code == 200 and b"late" in await up.read(ok)
        # a stream that falls silent longer than the family's timeout raises while relayed
        response = await up.send("GET", "/stall", family="chat", authenticated=False)
        with pytest.raises(TRANSPORT_ERRORS):
            async for _chunk in response.aiter_raw():
                pass
        await response.aclose()
    finally:
        await up.aclose()


async def test_an_unreachable_provider_is_a_502():
    up = await _upstream(f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(UpstreamUnavailableError) as caught:
            await up.send("POST", "/echo", content=b"{}", authenticated=False)
        assert caught.value.status_code == 502 and caught.value.code == "upstream_unreachable"
    finally:
        await up.aclose()


async def test_bodies_are_sent_byte_for_byte_over_one_kept_alive_connection(backend):
    up = await _upstream(backend)
    PEERS.clear()
    multipart = b"--b\r\nContent-Disposition: form-data; name=f\r\n\r\n\x00\xff\r\n--b--\r\n"
    try:
        for _ in range(10):
            response = await up.send(
                "POST",
                "/echo",
                content=multipart,
                content_type="multipart/form-data; boundary=b",
                params={"q": "1"},
                authenticated=False,
            )
            doc = (await up.read(response)).decode()
            assert hashlib.sha256(multipart).hexdigest() in doc
            assert '"content_type":"multipart/form-data; boundary=b"' in doc
            assert '"accept_encoding":"identity"' in doc and '"query":{"q":"1"}' in doc
            headers = passthrough_headers(response.headers)
            assert headers["retry-after"] == "7" and headers["x-rate"] == "a"
        # without a body no Content-Type is invented
        response = await up.send("GET", "/echo", authenticated=False)
        assert '"content_type":null' in (await up.read(response)).decode()
        assert len(set(PEERS)) == 1  # every request reused the first connection
    finally:
        await up.aclose()


async def test_repeated_headers_are_joined_and_hop_headers_dropped(backend):
    up = await _upstream(backend)
    try:
        response = await up.send("GET", "/repeated", authenticated=False)
        await up.read_raw(response)
        headers = passthrough_headers(response.headers)
        assert headers["x-multi"] == "one, two"
        assert "content-length" not in headers and "date" not in headers
    finally:
        await up.aclose()


async def test_sixty_requests_are_in_flight_at_once(backend):
    IN_FLIGHT.update(now=0, max=0)
    up = await _upstream(backend)
    try:

        async def one() -> int:
            response = await up.send("GET", "/crowd", authenticated=False)
            return response.status_code if await up.read(response) else 0

        assert await asyncio.gather(*(one() for _ in range(60))) == [200] * 60
        assert IN_FLIGHT["max"] == 60
    finally:
        await up.aclose()


async def test_signature_fetches_answer_read_httpx_responses_and_httpx_errors(backend):
    up = await _upstream(backend)
    fetch = up.signatures
    assert isinstance(fetch, SignatureClient)
    try:
        got = await fetch.get(f"{backend}/v1/proxy/signature/c1", headers={}, timeout=5)
        assert isinstance(got, httpx.Response) and got.status_code == 200
        assert got.json() == {"text": "t", "signature": "0xs"}  # the coding removed
        busy = await fetch.get(f"{backend}/v1/proxy/signature/busy", headers={}, timeout=5)
        assert busy.status_code == 429 and busy.headers["retry-after"] == "2"
        # the library's verifier catches httpx.HTTPError: a slow or absent provider raises one
        with pytest.raises(httpx.TimeoutException):
            await fetch.get(f"{backend}/v1/proxy/slow?s=2", headers={}, timeout=0.3)
        with pytest.raises(httpx.ConnectError):
            await fetch.get(f"http://127.0.0.1:{free_port()}/x", headers={}, timeout=5)
    finally:
        await up.aclose()


@pytest.mark.parametrize("status", [400, 404, 502])
def test_a_hostile_error_body_is_an_error_not_a_crash(status):
    """The attack: the provider (or a relay) answers an error whose body is 100 000 nested
    arrays. serve answers the mapped error with the body's text as message; parsing it once
    raised RecursionError, a 500 of serve's own."""
    deep = b"[" * 100_000 + b"]" * 100_000
    err = error_from_upstream(status, deep, {})
    assert err.status_code == (status if status < 500 else 502)
    assert len(err.message) <= 2100 and "[[[" in err.message  # the text, cut at 2000
