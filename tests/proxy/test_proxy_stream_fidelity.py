"""serve relays a provider's SSE stream byte for byte (:mod:`broker.proxy.streaming`): a real
chatbot gateway on anvil in front of a backend that sends hand-made streams in chosen TCP chunks,
serve in ``warn``, ``off`` and ``enforce`` mode, a raw client.

Each stream (``event:`` / ``id:`` / ``retry:`` fields, comments, ``data:`` without a space,
multi-line data, CRLF, CR-only, chunks cut between ``\\r`` and ``\\n``, an unterminated last event,
no ``[DONE]``) must reach the client unchanged except for the two outcome comments, inserted at an
event boundary in the stream's own line ends (before ``[DONE]``, before an unterminated last event,
else at the end). The usage is billed from it (the fee the gateway's rule gives) and, in ``warn``
and ``enforce``, the signature over the raw stream verifies. Attacks: chunk boundaries between
``\\r`` and ``\\n`` must not make serve send a partial event or a doubled line end (every read of
the client ends at an event boundary); a CR-only event is sent at once, not held for a ``\\n`` that
may follow; a partial event is not sent before it is complete; a stream that breaks off mid-event
ends with one error event, nothing of the partial event."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import pytest
from devnet_helpers import (
    RAISED_GATEWAY_LIMITS,
    devnet_gateway_settings,
    funded_user_broker,
    register_acknowledged_service,
)
from proxy_helpers import ThreadServer, free_port
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from broker.proxy import ServeSettings, create_app
from broker.wire.fees import compute_fee

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ZG = 10**18
API_KEY = "sk-stream-fidelity"
IN_PRICE, OUT_PRICE = 10**9, 3 * 10**9
USAGE = {"prompt_tokens": 7, "completion_tokens": 11, "total_tokens": 18}
CHUNK_GAP_S = 0.02  # between the backend's chunks, so that each reaches serve on its own
HOLD_S = 30  # how long the holding stream waits for the test at most
HERE = None  # in a scenario's chunk list: where serve must insert its outcome comments
RELEASE = threading.Event()  # lets the holding stream send its rest


def _json(content: str | None = None, usage: bool = False) -> bytes:
    obj: dict = {"id": "chatcmpl-fidelity", "object": "chat.completion.chunk", "choices": []}
    if content is not None:
        obj["choices"] = [{"index": 0, "delta": {"content": content}}]
    if usage:
        obj["usage"] = USAGE
    return json.dumps(obj).encode()


HEL, LO, USE = _json("Hel"), _json("lo"), _json(usage=True)
# a JSON object cut in two ``data:`` lines (joined with "\n", still one object)
HALF_A, HALF_B = LO[: LO.index(b'"choices"')], LO[LO.index(b'"choices"') :]
LF_EVENTS = (
    b": stream opened\n\n"
    b"retry: 1500\n\n"
    b"event: message\nid: 1\ndata:" + HEL + b"\n\n"  # no space after "data:"
    b"id: 2\ndata: " + HALF_A + b"\ndata: " + HALF_B + b"\n\n"  # multi-line data
    b": keep-alive\n\n"
    b"event: usage\ndata: " + USE + b"\n\n"
)
CRLF_EVENTS = LF_EVENTS.replace(b"\n", b"\r\n")
CR_EVENTS = LF_EVENTS.replace(b"\n", b"\r")


def _cut_after_every_cr(stream: bytes) -> list[bytes]:
    return [part + b"\r" for part in stream.split(b"\r")[:-1]] + [stream.split(b"\r")[-1]]


#: name: (the backend's chunks, with HERE where the comments go; the line end of the comments)
SCENARIOS: dict[str, tuple[list, bytes]] = {
    "lf-fields": ([LF_EVENTS[:40], LF_EVENTS[40:], HERE, b"data: [DONE]\n\n"], b"\n"),
    "crlf-split-mid-line-end": (
        [
            CRLF_EVENTS[: CRLF_EVENTS.index(b"\r\n\r\n") + 1],  # "...opened\r" | "\n\r\n..."
            CRLF_EVENTS[CRLF_EVENTS.index(b"\r\n\r\n") + 1 : -1],  # ends "...}\r\n\r" | "\n"
            CRLF_EVENTS[-1:],
            HERE,
            b"data: [DONE]\r\n\r\n",
        ],
        b"\r\n",
    ),
    "cr-only": ([CR_EVENTS[:-1], CR_EVENTS[-1:], HERE, b"data: [DONE]\r\r"], b"\r"),
    "attack-every-cr-split-from-its-lf": (
        [*_cut_after_every_cr(CRLF_EVENTS), HERE, b"data: [DONE]\r", b"\n\r", b"\n"],
        b"\r\n",
    ),
    "unterminated-last-event": (
        [b"data: " + HEL + b"\n\n", HERE, b"data: " + USE[:20], USE[20:]],
        b"\n",
    ),
    "no-done": ([b"data: " + HEL + b"\n\n", b"data: " + USE + b"\n\n", HERE], b"\n"),
}
#: the holding stream: the first part, then (after RELEASE) the rest
HOLD_FIRST = b": hi\r\rdata: " + HEL + b"\r\r"
HOLD_PARTIAL = b"data: " + USE[:10]  # sent with the first part: not an event yet
HOLD_REST = [USE[10:] + b"\r", b"\r", HERE, b"data: [DONE]\r\r"]
#: the stalling stream: an event and part of the next, silence longer than serve's read timeout
STALL_FIRST = b"event: a\r\ndata: " + HEL + b"\r\n\r\n"
STALL_PARTIAL = b"data: " + USE[:10]
STALL_TIMEOUT_S = 0.5


def _stream_of(chunks: list) -> bytes:
    return b"".join(c for c in chunks if c is not HERE)


async def _chat(request: Request) -> StreamingResponse:
    body = await request.json()
    name = body["messages"][0]["content"]

    async def events():
        if name == "hold":
            yield HOLD_FIRST + HOLD_PARTIAL
            deadline = time.monotonic() + HOLD_S
            while not RELEASE.is_set() and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            chunks = HOLD_REST
        elif name == "stall":
            yield STALL_FIRST
            await asyncio.sleep(CHUNK_GAP_S)
            yield STALL_PARTIAL
            await asyncio.sleep(STALL_TIMEOUT_S * 4)
            chunks = [USE[10:] + b"\r\n\r\n", b"data: [DONE]\r\n\r\n"]
        else:
            chunks = SCENARIOS[name][0]
        for chunk in chunks:
            if chunk is not HERE:
                yield chunk
                await asyncio.sleep(CHUNK_GAP_S)

    return StreamingResponse(events(), media_type="text/event-stream")


@pytest.fixture(scope="module")
def gateway(devnet, tmp_path_factory):
    """A chatbot gateway (prices IN_PRICE / OUT_PRICE per token) registered on the devnet, in front
    of the hand-made streams; yields the provider address."""
    from broker.devnet import fund_new_account
    from broker.provider.app import create_app as create_gateway_app
    from broker.provider.limits import Limits
    from broker.provider.serve import build_gateway
    from broker.provider.tee import LocalTeeSigner

    tmp = tmp_path_factory.mktemp("fidelity-gateway")
    provider = fund_new_account(devnet, amount_neuron=1000 * ZG)
    port = free_port()
    signer = LocalTeeSigner(bytes.fromhex("5e" * 32))
    backend_app = Starlette(routes=[Route("/chat/completions", _chat, methods=["POST"])])
    with ThreadServer(backend_app) as backend:
        settings = devnet_gateway_settings(
            devnet,
            provider,
            tmp,
            port=port,
            model="chat-model",
            input_price=IN_PRICE,
            output_price=OUT_PRICE,
            target_url=backend,
        )
        register_acknowledged_service(devnet, provider, settings, signer.address)
        gw = build_gateway(settings, signer=signer, with_scheduler=False)
        gw.limits = Limits(**RAISED_GATEWAY_LIMITS)
        try:
            with ThreadServer(create_gateway_app(gw), port=port):
                yield provider.address
        finally:
            gw.db.dispose()


def _serve(user, gateway: str, **settings) -> ThreadServer:
    """serve for ``user`` in front of provider ``gateway`` (API key ``API_KEY``, no auto-funding,
    no start-up step), with ``settings`` (other ``ServeSettings`` fields) on top."""
    serve_settings = ServeSettings(
        provider=gateway, api_key=API_KEY, auto_funding=False, **settings
    )
    return ThreadServer(create_app(user, serve_settings, run_startup=False))


@pytest.fixture(scope="module")
def serves(devnet, gateway):
    """serve in each verification mode for one funded user: ``(user broker, {mode: url})``."""
    user = funded_user_broker(devnet, ledger=10, amount_neuron=100 * ZG)
    warn_settings = ServeSettings(provider=gateway, api_key=API_KEY, funding_interval=600)
    try:
        with (
            ThreadServer(create_app(user, warn_settings)) as warn,
            _serve(user, gateway, verify="off") as off,
            _serve(user, gateway, verify="enforce") as enforce,
        ):
            yield user, {"warn": warn, "off": off, "enforce": enforce}
    finally:
        user.inference.close()


def _fee(user, provider: str) -> int:
    return user.inference.fee_store.get_totals(user.address, provider).total_fee


def _expected_fee(stream: bytes) -> int:
    fee = compute_fee(
        "chatbot", b"{}", stream, input_price=IN_PRICE, output_price=OUT_PRICE, streamed=True
    )
    return fee.fee


def _comments(mode: str, eol: bytes) -> bytes:
    verified, reason = ("off", "off") if mode == "off" else ("true", "verified; binding=full")
    return (
        b": X-0G-Verified: " + verified.encode() + eol + eol
        + b": X-0G-Verification-Reason: " + reason.encode() + eol + eol
    )  # fmt: skip


def _event_ends(stream: bytes) -> set[int]:
    """Offsets where an event of ``stream`` has ended (after the line end of a blank line; for a
    ``\\r\\n`` also between its ``\\r`` and ``\\n``), and 0: where a relay may cut the stream."""
    ends, i, line_start, size = {0}, 0, 0, len(stream)
    while i < size:
        if stream[i] in b"\r\n":
            end = i + 2 if stream[i : i + 2] == b"\r\n" else i + 1
            if i == line_start:  # a blank line
                ends |= {i + 1, end}
            i = line_start = end
        else:
            i += 1
    return ends


def _read(url: str, name: str) -> tuple[httpx.Headers, list[bytes]]:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    body = {"model": "chat-model", "stream": True, "messages": [{"role": "user", "content": name}]}
    with (
        httpx.Client(base_url=url, headers=headers, timeout=120) as client,
        client.stream("POST", "/v1/chat/completions", json=body) as response,
    ):
        assert response.status_code == 200, response.read()
        return response.headers, list(response.iter_raw())


@pytest.mark.parametrize("mode", ["warn", "off", "enforce"])
@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_stream_reaches_the_client_byte_for_byte_and_is_billed(serves, gateway, mode, name):
    user, urls = serves
    chunks, eol = SCENARIOS[name]
    stream = _stream_of(chunks)
    cut = len(_stream_of(chunks[: chunks.index(HERE)]))
    comments = _comments(mode, eol)
    before = _fee(user, gateway)
    headers, reads = _read(urls[mode], name)
    received = b"".join(reads)
    assert received == stream[:cut] + comments + stream[cut:]
    assert headers["content-type"].startswith("text/event-stream")
    # billed from the usage in the stream, as the gateway bills it, before the stream ended
    assert _fee(user, gateway) - before == _expected_fee(stream) == 7 * IN_PRICE + 11 * OUT_PRICE
    if mode == "enforce":  # verified before anything was sent
        assert headers["X-0G-Verified"] == "true"
        return
    # each read ends where an event ended (no partial event, no line end cut by an insertion)
    ends = _event_ends(stream)
    allowed = {e for e in ends if e <= cut} | {e + len(comments) for e in ends if e >= cut}
    allowed.add(len(received))  # the end (after an unterminated last event too)
    offset = 0
    for read in reads:
        offset += len(read)
        assert offset in allowed, (offset, received[:offset])


def test_a_cr_event_goes_out_at_once_and_a_partial_event_waits(serves, gateway):
    """A CR-only event is complete at its second ``\\r``: it reaches the client while the backend
    holds the rest (no waiting for a ``\\n`` that never comes); the partial event sent with it does
    not."""
    user, urls = serves
    before = _fee(user, gateway)
    RELEASE.clear()
    body = {
        "model": "chat-model",
        "stream": True,
        "messages": [{"role": "user", "content": "hold"}],
    }
    try:
        with (
            httpx.Client(
                base_url=urls["warn"],
                headers={"Authorization": f"Bearer {API_KEY}"},
                timeout=httpx.Timeout(120, read=HOLD_S),
            ) as client,
            client.stream("POST", "/v1/chat/completions", json=body) as response,
        ):
            reads = response.iter_raw()
            first = next(reads)
            assert not RELEASE.is_set()
            assert first == HOLD_FIRST  # complete events only: not the partial one after them
            RELEASE.set()
            rest = b"".join(reads)
    finally:
        RELEASE.set()
    tail = _stream_of([HOLD_PARTIAL, *HOLD_REST[: HOLD_REST.index(HERE)]])
    assert rest == tail + _comments("warn", b"\r") + b"data: [DONE]\r\r"
    assert _fee(user, gateway) - before == 7 * IN_PRICE + 11 * OUT_PRICE


def test_a_stream_that_breaks_off_ends_with_one_error_event(serves, gateway):
    """serve's read times out in the middle of an event: the complete events went out unchanged,
    then one error event in OpenAI's shape; neither the partial event nor outcome comments nor a
    ``[DONE]`` follow."""
    user, _ = serves
    with _serve(user, gateway, chat_timeout=STALL_TIMEOUT_S) as url:
        _, reads = _read(url, "stall")
    received = b"".join(reads)
    assert received.startswith(STALL_FIRST)
    error = received[len(STALL_FIRST) :]
    assert error.startswith(b"data: ") and error.endswith(b"\n\n") and error.count(b"\n") == 2
    assert json.loads(error[6:])["error"]["code"] == "upstream_stream_broken"
