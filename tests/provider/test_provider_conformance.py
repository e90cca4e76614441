"""Conformance of a CHATBOT gateway with ``provider-gateway.md`` B5 and B10, on anvil, against a
real OpenAI-compatible backend on loopback:

* a backend that compresses its answers (``Content-Encoding: gzip``) is still billed by usage, and a
  client that did not ask for compression gets plain bytes (B5: decoded for parsing only);
* a streaming client that disconnects mid-stream is still billed from the complete stream, and its
  per-user in-flight slot is released (B5 "keeps reading to bill", B6);
* a settlement pass whose items would all fail (owner revoked the TEE acknowledgement) previews them
  with ``previewSettlementResults`` and sends no transaction (B10.4); rows stay unsettled.
"""

from __future__ import annotations

import asyncio
import gzip
import hashlib
import json
import time

import httpx
import pytest
from devnet_helpers import (
    devnet_gateway_settings,
    devnet_owner_contract,
    register_acknowledged_service,
    settle_once_recording,
)
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from server_helpers import UvicornThread, free_port

from broker.chain.connection import connect
from broker.chain.contracts import LedgerManagerContract
from broker.chain.sender import TransactionSender
from broker.inference.token_issuing import new_session_token
from broker.provider.app import create_app
from broker.provider.register import acknowledge_tee_signer_by_owner
from broker.provider.serve import build_gateway
from broker.provider.settlement import SettlementStatus
from broker.provider.tee import LocalTeeSigner
from broker.wire.session_token import authorization_header, sign_session_token

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ZG = 10**18
IN_PRICE, OUT_PRICE = 10**9, 3 * 10**9
USAGE = {"prompt_tokens": 7, "completion_tokens": 11, "total_tokens": 18}
FEE = 7 * IN_PRICE + 11 * OUT_PRICE
WORDS = ["alpha ", "beta ", "gamma ", "delta ", "epsilon "]


def _chat_backend(seen: list) -> FastAPI:
    """An OpenAI-compatible chat backend that gzips when allowed and streams slowly."""
    app = FastAPI()

    @app.post("/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        seen.append({"headers": dict(request.headers), "body": body})
        if body.get("stream"):
            delay = float(body.get("delay", 0))
            with_usage = (body.get("stream_options") or {}).get("include_usage") is True

            async def events():
                for w in WORDS:
                    chunk = {"id": "c1", "choices": [{"index": 0, "delta": {"content": w}}]}
                    yield f"data: {json.dumps(chunk)}\n\n".encode()
                    await asyncio.sleep(delay)
                if with_usage:
                    last = json.dumps({"id": "c1", "choices": [], "usage": USAGE})
                    yield f"data: {last}\n\n".encode()
                yield b"data: [DONE]\n\n"
                seen.append({"stream_done": True})

            return StreamingResponse(events(), media_type="text/event-stream")
        payload = json.dumps(
            {
                "id": "c2",
                "object": "chat.completion",
                "usage": USAGE,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi there"}}],
            }
        ).encode()
        if "gzip" in request.headers.get("accept-encoding", ""):
            return Response(
                gzip.compress(payload),
                media_type="application/json",
                headers={"Content-Encoding": "gzip"},
            )
        return Response(payload, media_type="application/json")

    return app


@pytest.fixture(scope="module")
def chat_world(devnet, tmp_path_factory):
    from broker.devnet import fund_new_account

    tmp = tmp_path_factory.mktemp("chat-gateway")
    provider = fund_new_account(devnet, amount_neuron=1000 * ZG)
    w3 = connect(devnet.rpc_url)
    gw_port = free_port()
    seen: list = []
    signer = LocalTeeSigner(bytes.fromhex("33" * 32))
    owner = devnet_owner_contract(devnet)
    with UvicornThread(_chat_backend(seen), free_port()) as backend:
        settings = devnet_gateway_settings(
            devnet,
            provider,
            tmp,
            port=gw_port,
            model="chat-model",
            input_price=IN_PRICE,
            output_price=OUT_PRICE,
            target_url=backend.url,
        )
        pcontract = register_acknowledged_service(devnet, provider, settings, signer.address)
        gw = build_gateway(settings, signer=signer, with_scheduler=False)
        with UvicornThread(create_app(gw), gw_port) as server:
            yield {
                "w3": w3,
                "gw": gw,
                "url": server.url,
                "provider": provider,
                "seen": seen,
                "devnet": devnet,
                "owner": owner,
                "pcontract": pcontract,
            }
        gw.db.dispose()


def _funded_user(world, account):
    w3 = world["w3"]
    ledger = LedgerManagerContract(
        w3, world["devnet"].ledger_address, TransactionSender(w3, account)
    )
    ledger.add_ledger("", 10 * ZG)
    ledger.transfer_fund(world["provider"].address, "inference-v1.0", 5 * ZG)
    return account


def _auth(world, account) -> str:
    tok = new_session_token(account.address, world["provider"].address)
    return authorization_header(sign_session_token(tok, account))


CHAT = {"model": "chat-model", "messages": [{"role": "user", "content": "hi"}]}


def test_compressed_backend_is_billed_by_usage(chat_world, fresh_account):
    world = chat_world
    user = _funded_user(world, fresh_account)
    # an httpx client asks for gzip itself and decodes it: the usage must still be billed
    r = httpx.post(
        world["url"] + "/v1/proxy/chat/completions",
        json=CHAT,
        timeout=30,
        headers={"Authorization": _auth(world, user)},
    )
    assert r.status_code == 200 and r.json()["usage"] == USAGE
    assert world["gw"].ledger.unsettled_fee(user.address) == FEE
    # the client's Accept-Encoding reached the backend
    assert "gzip" in world["seen"][-1]["headers"].get("accept-encoding", "")
    # a client that did not ask for compression gets the body uncompressed
    r = httpx.post(
        world["url"] + "/v1/proxy/chat/completions",
        json=CHAT,
        timeout=30,
        headers={"Authorization": _auth(world, user), "Accept-Encoding": "identity"},
    )
    assert "content-encoding" not in r.headers
    assert json.loads(r.content)["usage"] == USAGE
    assert world["gw"].ledger.unsettled_fee(user.address) == 2 * FEE


def test_stream_disconnect_is_billed_and_frees_the_slot(chat_world, fresh_account):
    world = chat_world
    user = _funded_user(world, fresh_account)
    gw = world["gw"]
    before = len(world["seen"])
    body = {**CHAT, "stream": True, "delay": 0.3}
    with (
        httpx.Client(timeout=30) as c,
        c.stream(
            "POST",
            world["url"] + "/v1/proxy/chat/completions",
            json=body,
            headers={"Authorization": _auth(world, user)},
        ) as r,
    ):
        assert r.status_code == 200
        chat_id = r.headers["ZG-Res-Key"]
        first = next(r.iter_raw())
        assert first.startswith(b"data: ")
        # the stream holds its global and per-user in-flight slots (B6) while it runs
        assert gw.limits.global_inflight.count() == 1
        assert gw.limits.user_inflight.count(user.address.lower()) == 1
    # leaving the block closed the connection mid-stream
    forwarded = world["seen"][before]["body"]
    assert forwarded["stream_options"] == {"include_usage": True}  # B5 rewrite
    deadline = time.time() + 15
    while time.time() < deadline:
        if (
            gw.ledger.unsettled_fee(user.address) == FEE
            and gw.limits.user_inflight.count(user.address.lower()) == 0
            and gw.limits.global_inflight.count() == 0
        ):
            break
        time.sleep(0.1)
    # billed from the complete stream's usage, not from the words seen before the disconnect
    assert gw.ledger.unsettled_fee(user.address) == FEE
    assert gw.limits.user_inflight.count(user.address.lower()) == 0
    assert gw.limits.global_inflight.count() == 0
    assert gw.signatures.get(chat_id).text.count(":") == 1


def test_stream_is_signed_before_it_ends(chat_world, fresh_account):
    world = chat_world
    user = _funded_user(world, fresh_account)
    with httpx.Client(timeout=30) as c:
        with c.stream(
            "POST",
            world["url"] + "/v1/proxy/chat/completions",
            json={**CHAT, "stream": True},
            headers={"Authorization": _auth(world, user)},
        ) as r:
            raw = b"".join(r.iter_raw())
            chat_id = r.headers["ZG-Res-Key"]
        sig = c.get(world["url"] + f"/v1/proxy/signature/{chat_id}").json()
    assert raw.endswith(b"data: [DONE]\n\n")
    assert sig["text"].split(":")[1] == hashlib.sha256(raw).hexdigest()
    assert world["gw"].ledger.unsettled_fee(user.address) == FEE


def test_failing_settlement_items_are_previewed_not_sent(chat_world, fresh_account):
    world = chat_world
    user = _funded_user(world, fresh_account)
    gw, w3 = world["gw"], world["w3"]
    r = httpx.post(
        world["url"] + "/v1/proxy/chat/completions",
        json=CHAT,
        timeout=30,
        headers={"Authorization": _auth(world, user), "Accept-Encoding": "identity"},
    )
    assert r.status_code == 200
    owner = world["owner"]
    owner.sender.send(
        owner.contract.functions.revokeTEESignerAcknowledgement(world["provider"].address)
    )
    try:
        sent_before = w3.eth.get_transaction_count(world["provider"].address)
        report, receipts = settle_once_recording(gw)
        assert receipts == []  # nothing was sent ...
        assert w3.eth.get_transaction_count(world["provider"].address) == sent_before
        assert report.refused[user.address] == SettlementStatus.NO_TEE_SIGNER
        assert gw.ledger.unsettled_fee(user.address) == FEE  # ... and nothing was lost
    finally:
        acknowledge_tee_signer_by_owner(owner, world["provider"].address)
    report, receipts = settle_once_recording(gw)
    assert len(receipts) == 1
    assert report.settled[user.address] == FEE
    assert gw.ledger.unsettled_fee(user.address) == 0


def test_res_signature_header_recovers_to_the_tee_signer(chat_world, fresh_account):
    """A non-streamed billed answer carries ``ZG-Res-Signature``: the signature the signature
    endpoint returns, which recovers to the TEE signer over the text it returns, and that text
    binds the forwarded request and the bytes received. A changed answer does not verify; a stream
    (signed only once it ends) has no such header; a browser may read it (CORS expose list)."""
    from broker.inference.response_signature import recover_text_signer
    from broker.wire.forwarded_request import canonical_json

    world = chat_world
    user = _funded_user(world, fresh_account)
    signer = world["gw"].signer.address
    origin = {"Origin": "https://app.example.org"}
    with httpx.Client(timeout=30) as c:
        r = c.post(
            world["url"] + "/v1/proxy/chat/completions",
            json=CHAT,
            # plain bytes, so that r.content is what was signed
            headers={"Authorization": _auth(world, user), "Accept-Encoding": "identity", **origin},
        )
        assert r.status_code == 200, r.text
        header = r.headers["ZG-Res-Signature"]
        sig = c.get(world["url"] + f"/v1/proxy/signature/{r.headers['ZG-Res-Key']}").json()
        assert "zg-res-signature" in r.headers["access-control-expose-headers"].lower()
        with c.stream(
            "POST",
            world["url"] + "/v1/proxy/chat/completions",
            json={**CHAT, "stream": True},
            headers={"Authorization": _auth(world, user)},
        ) as s:
            b"".join(s.iter_raw())
            assert s.status_code == 200 and "ZG-Res-Key" in s.headers
            assert "ZG-Res-Signature" not in s.headers
    assert header == sig["signature"]
    assert recover_text_signer(sig["text"], header) == signer
    expected = (
        hashlib.sha256(canonical_json(CHAT)).hexdigest()
        + ":"
        + hashlib.sha256(r.content).hexdigest()
    )
    assert sig["text"] == expected
    tampered = sig["text"].split(":")[0] + ":" + hashlib.sha256(r.content + b" ").hexdigest()
    assert recover_text_signer(tampered, header) != signer
