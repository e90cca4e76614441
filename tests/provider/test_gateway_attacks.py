"""Attacks on the gateway's billing and routing, each against a real gateway on loopback: a user
who tries to be served without paying, or to pay less than what the backend serves.

Real parts: the session ``devnet`` (anvil + our contracts), two registered services (a chatbot and
a text-to-image one) each behind a real uvicorn gateway built by ``build_gateway`` /
``create_app``, one recording backend on loopback (it reads a JSON body whatever its
``Content-Type`` and honours ``stream_options.include_usage`` as vLLM does), real SQLite files.
"""

from __future__ import annotations

import json

import httpx
import pytest
from devnet_helpers import devnet_gateway_settings, register_acknowledged_service
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from server_helpers import UvicornThread, free_port

from broker.chain.connection import connect
from broker.chain.contracts import LedgerManagerContract
from broker.chain.sender import TransactionSender
from broker.inference.token_issuing import new_session_token
from broker.provider.app import create_app
from broker.provider.serve import UVICORN_OPTIONS, build_gateway
from broker.provider.tee import LocalTeeSigner
from broker.wire.session_token import authorization_header, sign_session_token

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ZG = 10**18
IN_PRICE, OUT_PRICE = 10**9, 2 * 10**9  # chatbot, neuron per token
IMAGE_PRICE = 10**15  # text-to-image, neuron per image
USAGE = {"prompt_tokens": 5000, "completion_tokens": 2, "total_tokens": 5002}
#: (path, parsed JSON body or None) of each request the backend received
RECEIVED: list[tuple[str, object]] = []
#: the headers of each request the backend received (lower-case names, repeated ones listed)
HEADERS: list[list[tuple[str, str]]] = []


def _backend() -> FastAPI:
    """An OpenAI-compatible backend that serves chat, images and an attestation report; it parses
    a JSON body whatever the ``Content-Type`` says (as many servers do)."""
    app = FastAPI()

    async def _body(request: Request):
        raw = await request.body()
        HEADERS.append([(k.lower(), v) for k, v in request.headers.items()])
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        RECEIVED.append((request.url.path, body))
        return body if isinstance(body, dict) else {}

    @app.post("/chat/completions")
    async def chat(request: Request):
        body = await _body(request)
        if body.get("stream") not in (True, "true", 1):
            return {
                "id": "chatcmpl-a",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "a b"}}],
                "usage": USAGE,
            }
        with_usage = (body.get("stream_options") or {}).get("include_usage") in (True, "true", 1)

        async def events():
            yield b'data: {"id":"chatcmpl-s","choices":[{"index":0,"delta":{"content":"a b"}}]}\n\n'
            if with_usage:
                last = {"id": "chatcmpl-s", "choices": [], "usage": USAGE}
                yield f"data: {json.dumps(last)}\n\n".encode()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.post("/images/generations")
    async def images(request: Request):
        body = await _body(request)
        n = body.get("n", 1)
        return {"created": 1, "data": [{"b64_json": "aW1n"}] * (n if isinstance(n, int) else 1)}

    @app.get("/attestation/report")
    async def report():
        return JSONResponse({"signing_address": "0x0"})

    return app


def _gateway(devnet, tmp, backend_url: str, key: str, **fields):
    from broker.devnet import fund_new_account

    provider = fund_new_account(devnet, amount_neuron=1000 * ZG)
    port = free_port()
    settings = devnet_gateway_settings(
        devnet, provider, tmp, port=port, tee_signer_key="0x" + key * 32, **fields
    )
    signer = LocalTeeSigner(bytes.fromhex(key * 32))
    register_acknowledged_service(devnet, provider, settings, signer.address)
    settings = settings.model_copy(update={"target_url": backend_url})
    return provider, port, build_gateway(settings, signer=signer, with_scheduler=False)


@pytest.fixture(scope="module")
def world(devnet, tmp_path_factory):
    with UvicornThread(_backend(), free_port()) as backend:
        chat_p, chat_port, chat_gw = _gateway(
            devnet,
            tmp_path_factory.mktemp("attack-chat"),
            backend.url,
            "51",
            model="chat-model",
            input_price=IN_PRICE,
            output_price=OUT_PRICE,
        )
        img_p, img_port, img_gw = _gateway(
            devnet,
            tmp_path_factory.mktemp("attack-img"),
            backend.url,
            "52",
            model="tiny",
            service_type="text-to-image",
            output_price=IMAGE_PRICE,
        )
        with (
            UvicornThread(create_app(chat_gw), chat_port, **UVICORN_OPTIONS) as chat,
            UvicornThread(create_app(img_gw), img_port, **UVICORN_OPTIONS) as img,
        ):
            yield {
                "w3": connect(devnet.rpc_url),
                "ledger": devnet.ledger_address,
                "chat": (chat.url, chat_p, chat_gw),
                "image": (img.url, img_p, img_gw),
            }
        chat_gw.db.dispose()
        img_gw.db.dispose()


def _fund(world, account, *providers) -> None:
    w3 = world["w3"]
    ledger = LedgerManagerContract(w3, world["ledger"], TransactionSender(w3, account))
    ledger.add_ledger("", 10 * ZG)
    for provider in providers:
        ledger.transfer_fund(provider.address, "inference-v1.0", 3 * ZG)


def _auth(account, provider, *, address: str | None = None) -> dict[str, str]:
    token = new_session_token(account.address if address is None else address, provider.address)
    return {"Authorization": authorization_header(sign_session_token(token, account))}


def _seen(path: str) -> list[object]:
    return [body for p, body in RECEIVED if p == path]


# ------------------------------------------------------------------ routing: free routes


@pytest.mark.parametrize("kind", ["chat", "image"])
@pytest.mark.parametrize(
    "path",
    [
        "/v1/proxy/attestation/%2e%2e/chat/completions",
        "/v1/proxy/attestation/..%2Fchat%2Fcompletions",
        "/v1/proxy/attestation/%2E%2E/images/generations",
        "/v1/proxy/attestation/%252e%252e/chat/completions",
        "/v1/proxy/attestation/./%2e%2e/%2e%2e/chat/completions",
        "/v1/proxy/v1/attestation/%2e%2e/images/generations",
    ],
)
def test_dot_segments_behind_a_free_prefix_reach_no_billable_route(world, kind, path):
    """A free ``/attestation`` path with ``..`` segments (percent-encoded, so that the client
    sends them; the server decodes them, the backend client resolves them) was forwarded
    without a token to ``/chat/completions`` or ``/images/generations``: free inference."""
    url = world[kind][0]
    RECEIVED.clear()
    body = {"model": "m", "prompt": "x", "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.post(url + path, json=body, timeout=30)
    assert r.status_code == 400, r.text
    assert r.json() == {"error": "unsupported endpoint: endpoint not supported"}
    assert RECEIVED == []


def test_free_route_still_forwarded(world):
    RECEIVED.clear()
    r = httpx.get(world["chat"][0] + "/v1/proxy/attestation/report?model=m", timeout=30)
    assert r.status_code == 200, r.text
    assert r.json() == {"signing_address": "0x0"}


# ------------------------------------------------------------------ images: the billed n


@pytest.mark.parametrize(
    "content_type",
    ["text/plain; charset=json", "text/plain", "application/x-www-form-urlencoded", None],
)
def test_image_n_is_billed_whatever_the_content_type_says(world, fresh_account, content_type):
    """A JSON body labelled as something else was billed ``n = 1`` while the backend made ``n``
    images (the gateway even relabelled a ``*json*``-parameter body ``application/json``)."""
    url, provider, gw = world["image"]
    _fund(world, fresh_account, provider)
    RECEIVED.clear()
    headers = _auth(fresh_account, provider)
    if content_type is not None:
        headers["Content-Type"] = content_type
    body = b'{"model": "tiny", "prompt": "x", "n": 3}'
    r = httpx.post(url + "/v1/proxy/images/generations", content=body, headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    assert len(r.json()["data"]) == 3  # what the backend made ...
    assert gw.ledger.stored_unsettled_fee(fresh_account.address) == 3 * IMAGE_PRICE  # ... is billed


def test_image_body_neither_json_nor_form_is_refused(world, fresh_account):
    url, provider, _ = world["image"]
    RECEIVED.clear()
    headers = {**_auth(fresh_account, provider), "Content-Type": "text/plain"}
    r = httpx.post(url + "/v1/proxy/images/generations", content=b"n=16", headers=headers)
    assert r.status_code == 400, r.text
    assert r.json() == {"error": "request body is not valid JSON"}
    assert RECEIVED == []


# ------------------------------------------------------------------ who pays


def test_user_address_case_does_not_split_the_outstanding_fees(world, fresh_account):
    """The token's ``address`` is compared case-insensitively with its signer (B3 check 10):
    the same user spelled in lower case had its own rows, so the fees the B4 gate counts after
    a restart (and on PostgreSQL always) were those of one spelling only."""
    url, provider, gw = world["chat"]
    user = fresh_account
    _fund(world, user, provider)
    body = {"model": "chat-model", "messages": [{"role": "user", "content": "hi"}]}
    fee = USAGE["prompt_tokens"] * IN_PRICE + USAGE["completion_tokens"] * OUT_PRICE
    for address in (user.address, user.address.lower(), "0X" + user.address[2:].upper()):
        headers = _auth(user, provider, address=address)
        r = httpx.post(url + "/v1/proxy/chat/completions", json=body, headers=headers, timeout=30)
        assert r.status_code == 200, r.text
    assert gw.ledger.stored_unsettled_fee(user.address) == 3 * fee
    assert [u for u in gw.ledger.users_with_unsettled() if u.lower() == user.address.lower()] == [
        user.address
    ]


# ------------------------------------------------------------------ chat streams: usage


@pytest.mark.parametrize(
    "stream_options",
    [{"include_usage": False}, {"include_usage": "false"}, {"include_usage": 0}, {}, None, "x"],
)
def test_chat_stream_is_billed_from_usage_whatever_the_client_asks(
    world, fresh_account, stream_options
):
    """``stream_options.include_usage: false`` was forwarded as sent: the backend's stream had no
    usage and the gateway billed the word-count fallback, no prompt tokens at all."""
    url, provider, gw = world["chat"]
    _fund(world, fresh_account, provider)
    RECEIVED.clear()
    body = {"model": "chat-model", "stream": True, "messages": [{"role": "user", "content": "x"}]}
    if stream_options is not None:
        body["stream_options"] = stream_options
    r = httpx.post(
        url + "/v1/proxy/chat/completions",
        json=body,
        headers=_auth(fresh_account, provider),
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert "usage" in r.text
    assert _seen("/chat/completions")[0]["stream_options"]["include_usage"] is True
    fee = USAGE["prompt_tokens"] * IN_PRICE + USAGE["completion_tokens"] * OUT_PRICE
    assert gw.ledger.stored_unsettled_fee(fresh_account.address) == fee


@pytest.mark.parametrize("stream", ["true", 1, "yes", [True], {"a": 1}])
def test_chat_stream_flag_that_is_not_a_boolean_is_refused(world, fresh_account, stream):
    """A backend reads ``"stream": "true"`` (or ``1``) as a stream (pydantic's lax booleans), but
    the gateway's rewrite only looked for ``true``: a stream without usage, billed by words."""
    url, provider, _ = world["chat"]
    RECEIVED.clear()
    body = {"model": "chat-model", "stream": stream, "messages": [{"role": "user", "content": "x"}]}
    r = httpx.post(
        url + "/v1/proxy/chat/completions",
        json=body,
        headers=_auth(fresh_account, provider),
        timeout=30,
    )
    assert r.status_code == 400, r.text
    assert r.json() == {"error": "invalid request body: stream must be true, false or null"}
    assert RECEIVED == []


@pytest.mark.parametrize("address", ["not-an-address", "0x1234", "0x" + "zz" * 20, ""])
def test_token_with_an_address_that_is_no_address_is_refused(world, fresh_account, address):
    """An address that is none was read from the chain before check 10 refused it: a 500."""
    url, provider, _ = world["chat"]
    body = {"model": "chat-model", "messages": [{"role": "user", "content": "x"}]}
    headers = _auth(fresh_account, provider, address=address)
    r = httpx.post(url + "/v1/proxy/chat/completions", json=body, headers=headers, timeout=30)
    assert r.status_code == 400, r.text
    assert r.json() == {
        "error": "validate session: signature verification failed: address mismatch"
    }


# ------------------------------------------------------------------ headers sent to the backend


def test_hop_by_hop_and_forwarding_headers_do_not_reach_the_backend(world, fresh_account):
    """Hop-by-hop headers (RFC 9110 7.6.1: those ``Connection`` names, ``TE``, ``Upgrade``,
    ``Proxy-*``...) and a client's ``Forwarded`` / ``X-Forwarded-*`` / ``X-Real-IP`` (the
    backend would take them for the gateway's word about the client) were copied to the backend;
    ``Host`` is the backend's own."""
    url, provider, _ = world["chat"]
    _fund(world, fresh_account, provider)
    HEADERS.clear()
    sent = {
        **_auth(fresh_account, provider),
        "Connection": "keep-alive, X-Hop-Secret",
        "X-Hop-Secret": "1",
        "Keep-Alive": "timeout=5",
        "TE": "trailers",
        "Trailer": "X-Checksum",
        "Upgrade": "h2c",
        "Proxy-Authorization": "Basic c2VjcmV0",
        "Proxy-Connection": "keep-alive",
        "Forwarded": "for=10.0.0.1;host=admin.internal",
        "X-Forwarded-For": "10.0.0.1",
        "X-Forwarded-Host": "admin.internal",
        "X-Forwarded-Proto": "https",
        "X-Real-IP": "10.0.0.1",
        "X-Trace-Id": "kept",
        "Host": "evil.example",
    }
    body = {"model": "chat-model", "messages": [{"role": "user", "content": "x"}]}
    r = httpx.post(url + "/v1/proxy/chat/completions", json=body, headers=sent, timeout=30)
    assert r.status_code == 200, r.text
    names = {name for name, _ in HEADERS[0]}
    leaked = names & {
        "x-hop-secret", "keep-alive", "te", "trailer", "upgrade", "proxy-authorization",
        "proxy-connection", "forwarded", "x-forwarded-for", "x-forwarded-host",
        "x-forwarded-proto", "x-real-ip", "authorization",
    }  # fmt: skip
    assert leaked == set()
    assert ("x-trace-id", "kept") in HEADERS[0]
    assert dict(HEADERS[0])["host"] != "evil.example"


# ------------------------------------------------------------------ routes of another service type


@pytest.mark.parametrize("route", ["/images/generations", "/images/edits", "/audio/transcriptions"])
def test_a_chatbot_gateway_refuses_routes_its_fee_rule_cannot_bill(world, fresh_account, route):
    """A chatbot service bills a chat's usage; a backend that also serves images or
    transcriptions (one server for several APIs) answered them, and the chatbot rule found no
    chat usage in the answer: served, billed 0."""
    url, provider, gw = world["chat"]
    _fund(world, fresh_account, provider)
    RECEIVED.clear()
    body = {"model": "chat-model", "prompt": "x", "n": 4}
    r = httpx.post(
        url + "/v1/proxy" + route, json=body, headers=_auth(fresh_account, provider), timeout=30
    )
    assert r.status_code == 400, r.text
    assert r.json() == {"error": "unsupported endpoint: endpoint not supported"}
    assert RECEIVED == []
    assert gw.ledger.stored_unsettled_fee(fresh_account.address) == 0


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded"])
def test_chat_stream_labelled_as_another_type_is_still_billed_from_usage(
    world, fresh_account, content_type
):
    """A chat body labelled as something else was forwarded as sent (the rewrite only read JSON
    labels); a backend that reads JSON whatever the label streamed it without usage."""
    url, provider, gw = world["chat"]
    _fund(world, fresh_account, provider)
    RECEIVED.clear()
    body = {
        "model": "chat-model",
        "stream": True,
        "stream_options": {"include_usage": False},
        "messages": [{"role": "user", "content": "x"}],
    }
    headers = {**_auth(fresh_account, provider), "Content-Type": content_type}
    r = httpx.post(
        url + "/v1/proxy/chat/completions",
        content=json.dumps(body).encode(),
        headers=headers,
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert _seen("/chat/completions")[0]["stream_options"]["include_usage"] is True
    fee = USAGE["prompt_tokens"] * IN_PRICE + USAGE["completion_tokens"] * OUT_PRICE
    assert gw.ledger.stored_unsettled_fee(fresh_account.address) == fee


@pytest.mark.parametrize("route", ["/chat/completions", "/images/generations"])
def test_a_compressed_request_body_is_refused(world, fresh_account, route):
    """The gateway bills the body it reads: a gzip body (``Content-Encoding: gzip``) cannot be
    read, so its ``n`` or stream flag would be billed as absent by a backend that inflates it."""
    import gzip

    kind = "chat" if route.startswith("/chat") else "image"
    url, provider, _ = world[kind]
    RECEIVED.clear()
    body = {"model": "m", "stream": True, "n": 4, "messages": [{"role": "user", "content": "x"}]}
    headers = {
        **_auth(fresh_account, provider),
        "Content-Type": "text/plain",
        "Content-Encoding": "gzip",
    }
    r = httpx.post(
        url + "/v1/proxy" + route,
        content=gzip.compress(json.dumps(body).encode()),
        headers=headers,
        timeout=30,
    )
    assert r.status_code == 415, r.text
    assert r.json() == {
        "error": "a request Content-Encoding is not supported (send it uncompressed)"
    }
    assert RECEIVED == []
