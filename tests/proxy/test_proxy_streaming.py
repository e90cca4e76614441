"""serve's stream relay (:mod:`broker.proxy.streaming`) end to end, through a real gateway to a chat
backend that sends one event and then holds the rest of its stream until the test releases it:
the first event reaches the client on its own, byte for byte, before the backend has sent anything
else (``warn`` and ``off``); the stream is then billed once, its ``[DONE]`` last, after the outcome
comments; and a client that disconnects after the first event does not stop the accounting."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import pytest
from devnet_helpers import provider_stack
from proxy_helpers import ThreadServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from broker.proxy import ServeSettings, create_app

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

API_KEY = "sk-stream-relay"
RELEASE = threading.Event()  # lets the backend send the rest of its stream
#: how long the backend holds the rest at most, and how long the client waits for the first event:
#: generous, so that a slow machine never fails the test; a relay that holds the first event until
#: more arrives makes the client's read time out (the backend is still holding)
HOLD_S = 60
FIRST_EVENT_WAIT_S = 30
SENT: list[bytes] = []  # the backend's events, as sent


def _event(delta: dict, usage: dict | None = None) -> bytes:
    chunk = {
        "id": "chatcmpl-held",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "tiny",
        "choices": [{"index": 0, "delta": delta, "finish_reason": None}],
    }
    if usage is not None:
        chunk["usage"] = usage
    return f"data: {json.dumps(chunk)}\n\n".encode()


async def _chat(request: Request) -> StreamingResponse:
    body = await request.json()
    assert body.get("stream") is True

    async def events():
        first = _event({"content": "first"})
        SENT.append(first)
        yield first
        deadline = time.monotonic() + HOLD_S
        while not RELEASE.is_set() and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        rest = _event({"content": " second"}) + _event(
            {}, usage={"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
        )
        SENT.append(rest)
        yield rest
        yield b"data: [DONE]\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")


@pytest.fixture(scope="module")
def stack(devnet, tmp_path_factory):
    """A provider stack whose chat backend holds its stream after the first event (overrides the
    package fixture; ``user_broker`` builds on it)."""
    backend = Starlette(routes=[Route("/chat/completions", _chat, methods=["POST"])])
    with (
        ThreadServer(backend) as url,
        provider_stack(
            devnet,
            tmp_path_factory.mktemp("held-stack"),
            model="tiny",
            chat_backend_url=url,
            raise_limits=True,
        ) as st,
    ):
        yield st, url


@pytest.fixture(scope="module", params=["warn", "off"])
def serve(request, stack, user_broker):
    st, _ = stack
    settings = ServeSettings(
        provider=st.provider_address,
        api_key=API_KEY,
        funding_interval=600,
        verify=request.param,
        extra_routes=True,  # the text-to-image service also fronts the chat backend
    )
    with ThreadServer(create_app(user_broker, settings)) as url:
        yield url, request.param


def _fee(user_broker, provider: str) -> int:
    return user_broker.inference.fee_store.get_totals(user_broker.address, provider).total_fee


def _post_stream(client: httpx.Client):
    return client.stream(
        "POST",
        "/v1/chat/completions",
        json={"model": "tiny", "stream": True, "messages": [{"role": "user", "content": "hi"}]},
    )


def _client(url: str) -> httpx.Client:
    return httpx.Client(
        base_url=url,
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=httpx.Timeout(120, read=FIRST_EVENT_WAIT_S),
    )


def test_the_first_event_reaches_the_client_before_the_backend_sends_more(
    serve, stack, user_broker
):
    url, mode = serve
    st, _ = stack
    before = _fee(user_broker, st.provider_address)
    RELEASE.clear()
    SENT.clear()
    try:
        with _client(url) as client, _post_stream(client) as response:
            assert response.status_code == 200
            assert response.headers["X-0G-Verified"] == ("off" if mode == "off" else "deferred")
            chunks = response.iter_raw()
            # the backend holds everything after its first event until RELEASE: this read only
            # returns because serve relayed that event on its own
            first = next(chunks)
            assert not RELEASE.is_set() and len(SENT) == 1
            assert first == SENT[0]  # the gateway's bytes, unchanged
            RELEASE.set()
            rest = b"".join(chunks)
    finally:
        RELEASE.set()
    assert rest.startswith(SENT[1])  # the rest, byte for byte, before the outcome
    tail = rest[len(SENT[1]) :]
    assert tail.startswith(b": X-0G-Verified: ")
    assert tail.endswith(b"\n\ndata: [DONE]\n\n") and tail.count(b"[DONE]") == 1
    if mode == "warn":
        assert b": X-0G-Verified: true\n\n" in tail
    # billed once, before [DONE] reached the client
    assert _fee(user_broker, st.provider_address) - before == st.service.output_price


def test_a_client_that_leaves_after_the_first_event_is_still_billed(serve, stack, user_broker):
    url, _mode = serve
    st, _ = stack
    before = _fee(user_broker, st.provider_address)
    RELEASE.clear()
    SENT.clear()
    try:
        with _client(url) as client, _post_stream(client) as response:
            assert next(response.iter_raw()) == SENT[0]
        # the client has gone; the backend finishes its stream only now
        RELEASE.set()
        deadline = time.monotonic() + 60
        while _fee(user_broker, st.provider_address) == before and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        RELEASE.set()
    assert _fee(user_broker, st.provider_address) - before == st.service.output_price
