"""The one capped body reader (``broker.asgi.body``) behind a real uvicorn server: a body at the
cap passes whole; a declared ``Content-Length`` over the cap is refused before a byte is read; a
chunked body without ``Content-Length`` (the attacker's way round the header check) is refused
as soon as it passes the cap, and the error carries the cap."""

from __future__ import annotations

import httpx
import pytest
from server_helpers import UvicornThread, free_port
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from broker.asgi import RequestBodyTooLargeError, read_capped_body
from broker.errors import BrokerError, InputError

CAP = 1000


async def _upload(request: Request) -> JSONResponse:
    try:
        body = await read_capped_body(request, CAP)
    except RequestBodyTooLargeError as exc:
        return JSONResponse({"error": str(exc), "cap": exc.cap}, status_code=413)
    return JSONResponse({"size": len(body), "head": body[:4].decode()})


@pytest.fixture(scope="module")
def server():
    app = Starlette(routes=[Route("/upload", _upload, methods=["POST"])])
    with UvicornThread(app, free_port()) as srv:
        yield srv.url


def _chunks(total: int, size: int = 300):
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        sent += n
        yield b"y" * n


def test_body_at_the_cap_passes_whole(server):
    with httpx.Client(timeout=10) as c:
        r = c.post(server + "/upload", content=b"abcd" + b"x" * (CAP - 4))
        assert r.status_code == 200 and r.json() == {"size": CAP, "head": "abcd"}
        r = c.post(server + "/upload")
        assert r.json() == {"size": 0, "head": ""}


def test_declared_length_over_the_cap_is_refused(server):
    with httpx.Client(timeout=10) as c:
        r = c.post(server + "/upload", content=b"x" * (CAP + 1))
    assert r.status_code == 413
    assert r.json() == {"error": f"request body larger than {CAP} bytes", "cap": CAP}


def test_chunked_body_over_the_cap_is_refused(server):
    with httpx.Client(timeout=10) as c:
        r = c.post(server + "/upload", content=_chunks(CAP + 1))  # no Content-Length
        assert r.request.headers.get("transfer-encoding") == "chunked"
        assert r.status_code == 413 and r.json()["cap"] == CAP
        r = c.post(server + "/upload", content=_chunks(CAP))
        assert r.status_code == 200 and r.json()["size"] == CAP


def test_the_error_is_a_typed_input_error():
    exc = RequestBodyTooLargeError(5)
    assert isinstance(exc, InputError) and isinstance(exc, BrokerError) and exc.cap == 5
