"""End to end on anvil: a user pays for three images through the gateway, the gateway settles, the
on-chain balances move by exactly the billed fees; token refusals; limits; crash-safe settlement.

Real parts: the session ``devnet`` (anvil + our contracts), a real uvicorn gateway and a small
OpenAI-compatible image backend on loopback, a real SQLite file.
"""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from devnet_helpers import (
    devnet_gateway_settings,
    register_acknowledged_service,
    settle_once_recording,
)
from eth_account import Account
from fastapi import FastAPI, Request
from server_helpers import UvicornThread, free_port

from broker.chain.connection import connect
from broker.chain.contracts import InferenceServingContract, LedgerManagerContract
from broker.chain.sender import TransactionSender
from broker.inference.response_signature import recover_text_signer
from broker.inference.token_issuing import new_session_token
from broker.provider.app import create_app
from broker.provider.serve import build_gateway
from broker.provider.settlement import Settler
from broker.provider.tee import LocalTeeSigner
from broker.wire.session_token import authorization_header, sign_session_token

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

PRICE = 10**16  # 0.01 0G per image
ZG = 10**18
RECEIVED: list[bytes] = []  # request bodies as the image backend received them


def _image_backend() -> FastAPI:
    app = FastAPI()

    @app.post("/images/generations")
    async def gen(request: Request):
        RECEIVED.append(await request.body())
        body = await request.json()
        await asyncio.sleep(float(body.get("sleep", 0)))
        return {"created": 1, "data": [{"b64_json": "aW1n"}] * int(body.get("n", 1))}

    return app


@pytest.fixture(scope="module")
def world(devnet, tmp_path_factory):
    from broker.devnet import fund_new_account

    tmp = tmp_path_factory.mktemp("gateway")
    provider = fund_new_account(devnet, amount_neuron=1000 * ZG)
    w3 = connect(devnet.rpc_url)
    gw_port = free_port()
    settings = devnet_gateway_settings(
        devnet,
        provider,
        tmp,
        port=gw_port,
        tee_signer_key="0x" + "11" * 32,
        service_type="text-to-image",
        model="tiny",
        output_price=PRICE,
        max_body_bytes=1 << 20,
    )
    signer = LocalTeeSigner(bytes.fromhex("11" * 32))
    pcontract = register_acknowledged_service(devnet, provider, settings, signer.address)
    with UvicornThread(_image_backend(), free_port()) as backend:
        settings = settings.model_copy(update={"target_url": backend.url})
        gw = build_gateway(settings, signer=signer, with_scheduler=False)
        with UvicornThread(create_app(gw), gw_port) as server:
            yield {
                "devnet": devnet,
                "w3": w3,
                "gw": gw,
                "url": server.url,
                "provider": provider,
                "settings": settings,
                "signer": signer,
                "pcontract": pcontract,
            }
        gw.db.dispose()


def _fund_user(world, account, transfer=5 * ZG):
    w3 = world["w3"]
    ledger = LedgerManagerContract(
        w3, world["devnet"].ledger_address, TransactionSender(w3, account)
    )
    ledger.add_ledger("", 10 * ZG)
    ledger.transfer_fund(world["provider"].address, "inference-v1.0", transfer)


def _header(world, account, **kw) -> dict[str, str]:
    tok = new_session_token(account.address, world["provider"].address, **kw)
    return {"Authorization": authorization_header(sign_session_token(tok, account))}


def _account(world, user):
    return world["pcontract"].get_account(user.address, world["provider"].address)


def test_three_images_settle_exactly(world, fresh_account):
    user = fresh_account
    _fund_user(world, user)
    before = _account(world, user).balance
    url, gw, w3 = world["url"], world["gw"], world["w3"]
    chat_ids = []
    with httpx.Client(timeout=30) as c:
        for _ in range(3):
            r = c.post(
                url + "/v1/proxy/images/generations",
                headers=_header(world, user),
                json={"model": "tiny", "prompt": "a cat", "n": 1},
            )
            assert r.status_code == 200, r.text
            chat_ids.append(r.headers["ZG-Res-Key"])
            sig = c.get(url + f"/v1/proxy/signature/{r.headers['ZG-Res-Key']}?model=tiny").json()
            # process_response's check: recovers to the registered TEE signer ...
            assert recover_text_signer(sig["text"], sig["signature"]) == world["signer"].address
            # ... and not to a swapped key
            other = LocalTeeSigner(bytes.fromhex("22" * 32))
            assert (
                recover_text_signer(sig["text"], other.sign_text(sig["text"]))
                != world["signer"].address
            )
        fee = c.get(url + f"/v1/user/{user.address}/unsettledfee", headers=_header(world, user))
        assert fee.json() == {"userAddress": user.address, "unsettledFee": str(3 * PRICE)}
        forbidden = c.get(
            url + f"/v1/user/{world['provider'].address}/unsettledfee", headers=_header(world, user)
        )
        assert forbidden.status_code == 403
        assert forbidden.json() == {"error": "you can only query your own unsettled fee"}
    wallet_before = w3.eth.get_balance(world["provider"].address)
    report, receipts = settle_once_recording(gw)
    assert report.settled[user.address] == 3 * PRICE
    assert _account(world, user).balance == before - 3 * PRICE
    gas = sum(r["gasUsed"] * r["effectiveGasPrice"] for r in receipts)
    assert w3.eth.get_balance(world["provider"].address) == wallet_before + 3 * PRICE - gas
    assert gw.ledger.unsettled_fee(user.address) == 0
    assert len(set(chat_ids)) == 3


def test_token_refusals(world, fresh_account):
    user = fresh_account
    _fund_user(world, user)
    url = world["url"]
    body = {"model": "tiny", "prompt": "x"}
    now = int(time.time() * 1000)
    stranger = Account.create()
    forged_tok = new_session_token(user.address, world["provider"].address)
    forged = {"Authorization": authorization_header(sign_session_token(forged_tok, stranger))}
    cases = [
        (forged, "validate session: signature verification failed: address mismatch"),
        (
            _header(world, user, timestamp_ms=now - 3 * 86_400_000, duration_ms=86_400_000),
            "validate session: session token expired",
        ),
        (
            {
                "Authorization": authorization_header(
                    sign_session_token(new_session_token(user.address, stranger.address), user)
                )
            },
            "validate session: session token is for different provider",
        ),
        (
            _header(world, user, generation=1),
            "validate session: invalid session token (future generation)",
        ),
        (
            {"Authorization": "Bearer nope"},
            (
                "validate session: missing or invalid Authorization header, must be Bearer "
                "app-sk-<base64(rawMessage:signature)>"
            ),
        ),
    ]
    with httpx.Client(timeout=30) as c:
        for headers, text in cases:
            r = c.post(url + "/v1/proxy/images/generations", headers=headers, json=body)
            assert (r.status_code, r.json()) == (400, {"error": text})
        # revoked API key (token id 3)
        InferenceServingContract(
            world["w3"], world["devnet"].inference_address, TransactionSender(world["w3"], user)
        ).revoke_token(world["provider"].address, 3)
        world["gw"].accounts.invalidate(user.address)
        r = c.post(
            url + "/v1/proxy/images/generations",
            json=body,
            headers=_header(world, user, token_id=3),
        )
        assert r.json() == {"error": "validate session: session token has been revoked"}
        # unsupported route and body cap
        r = c.post(url + "/v1/proxy/embeddings", headers=_header(world, user), json=body)
        assert r.json() == {"error": "unsupported endpoint: endpoint not supported"}
        r = c.post(
            url + "/v1/proxy/images/generations",
            headers=_header(world, user),
            content=b"x" * (2 << 20),
        )
        assert r.status_code == 413
        q = c.get(url + "/v1/quote").json()
        assert q["tee"] == "none" and q["attested"] is False
        models = c.get(url + "/v1/models").json()
        assert models["object"] == "list" and models["data"][0]["id"] == "tiny"


def test_low_balance_refused(world, fresh_account):
    user = fresh_account
    _fund_user(world, user, transfer=ZG)  # exactly the 1 0G reserve
    post = lambda: httpx.post(
        world["url"] + "/v1/proxy/images/generations",
        headers=_header(world, user),
        json={"prompt": "x"},
        timeout=30,
    )
    assert post().status_code == 200  # 1 0G >= 0 unsettled + 1 0G
    r = post()  # 1 0G < 0.01 unsettled + 1 0G
    assert r.status_code == 400
    assert r.json()["error"].startswith(
        "validate request: insufficient balance: your locked balance is 1 0G, but the required "
        "minimum is 1.01 0G"
    )


def test_rate_limit_burst(world, fresh_account):
    user = fresh_account
    _fund_user(world, user)

    async def burst():
        async with httpx.AsyncClient(timeout=30) as c:
            return await asyncio.gather(
                *[
                    c.post(
                        world["url"] + "/v1/proxy/images/generations",
                        headers=_header(world, user),
                        json={"prompt": "x", "sleep": 0.3},
                    )
                    for _ in range(9)
                ]
            )

    results = asyncio.run(burst())
    codes = sorted(r.status_code for r in results)
    assert codes.count(200) == 5 and codes.count(429) == 4
    for r in results:
        if r.status_code == 429:
            assert int(r.headers["Retry-After"]) >= 1
    # only the served requests were billed
    assert world["gw"].ledger.unsettled_fee(user.address) == 5 * PRICE


class _Crash(BaseException):
    pass


def test_crash_between_send_and_confirm(world, fresh_account):
    user = fresh_account
    _fund_user(world, user)
    gw = world["gw"]
    before = _account(world, user).balance
    for _ in range(2):
        r = httpx.post(
            world["url"] + "/v1/proxy/images/generations",
            headers=_header(world, user),
            json={"prompt": "x"},
            timeout=30,
        )
        assert r.status_code == 200

    # settle other users first so only this user is in the crashing pass
    def crash(_receipt):
        raise _Crash()

    crashing = Settler(
        gw.db,
        gw.settler.contract,
        gw.accounts,
        world["signer"],
        chain_id=world["w3"].eth.chain_id,
        on_sent=crash,
    )
    with pytest.raises(_Crash):
        crashing.settle_once()
    assert _account(world, user).balance == before - 2 * PRICE  # paid on chain ...
    assert gw.ledger.unsettled_fee(user.address) == 2 * PRICE  # ... not yet recorded
    # "restart": a fresh gateway on the same database reconciles at start-up
    fresh = build_gateway(world["settings"], signer=world["signer"], with_scheduler=False)
    assert fresh.ledger.unsettled_fee(user.address) == 0
    fresh.settler.settle_once()  # nothing charged twice
    assert _account(world, user).balance == before - 2 * PRICE
    fresh.db.dispose()


def test_signed_text_binds_the_forwarded_body(world, fresh_account):
    """The gateway forwards the Go ``json.Marshal`` form of a JSON body (B5) and signs sha256 of
    exactly those bytes and of the response bytes (B7), so a client can reproduce both hashes; a
    number it cannot forward exactly is refused (400) before anything is billed."""
    import hashlib

    from broker.wire.forwarded_request import canonical_json

    user = fresh_account
    _fund_user(world, user)
    url, gw = world["url"], world["gw"]
    body = {"prompt": "a <cat> & a dog", "model": "tiny", "n": 1, "guidance": 1.0}
    with httpx.Client(timeout=30) as c:
        r = c.post(
            url + "/v1/proxy/images/generations",
            headers=_header(world, user),
            content=b'{ "prompt" : "a <cat> & a dog", "model": "tiny", "n": 1, "guidance": 1.0 }',
            params={"x": "1"},
        )
        assert r.status_code == 200, r.text
        assert RECEIVED[-1] == canonical_json(body)
        assert (
            RECEIVED[-1] == b'{"guidance":1,"model":"tiny","n":1,"prompt":"a \\u003ccat\\u003e '
            b'\\u0026 a dog"}'
        )
        sig = c.get(url + f"/v1/proxy/signature/{r.headers['ZG-Res-Key']}").json()
        assert sig["text"] == (
            hashlib.sha256(canonical_json(body)).hexdigest()
            + ":"
            + hashlib.sha256(r.content).hexdigest()
        )
        before = gw.ledger.unsettled_fee(user.address)
        bad = c.post(
            url + "/v1/proxy/images/generations",
            headers=_header(world, user),
            content=b'{"prompt": "x", "seed": 9007199254740993}',
        )
        assert bad.status_code == 400 and "cannot be forwarded exactly" in bad.json()["error"]
        assert gw.ledger.unsettled_fee(user.address) == before
