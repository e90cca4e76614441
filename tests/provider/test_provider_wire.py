"""Gateway wire details of ``provider-gateway.md``: the two CORS policies (B2), the per-IP limit of
the non-proxy ``/v1`` routes (B6), ``SyncService`` removing the service when ``servingUrl`` is empty
(B11), and the exact, fast ``unsettledFee`` sum (B9).

Real parts: the session ``devnet``, a real uvicorn gateway on loopback, a real SQLite file.
"""

from __future__ import annotations

import time
import uuid

import httpx
import pytest
from devnet_helpers import devnet_gateway_settings, register_acknowledged_service
from eth_account import Account
from eth_account.messages import encode_defunct
from server_helpers import UvicornThread, free_port

from broker.chain.connection import connect
from broker.chain.contracts import InferenceServingContract, LedgerManagerContract
from broker.chain.errors import ContractRevertError
from broker.chain.sender import TransactionSender
from broker.inference.token_issuing import new_session_token
from broker.provider.app import create_app
from broker.provider.billing import FeeLedger
from broker.provider.db import open_database
from broker.provider.errors import SessionValidationError
from broker.provider.limits import IP_MESSAGE, Limits
from broker.provider.ops import request_counts
from broker.provider.register import register_service
from broker.provider.serve import build_gateway
from broker.provider.settings import ProviderSettings
from broker.provider.tee import LocalTeeSigner
from broker.wire.fees import Fee
from broker.wire.session_token import authorization_header, sign_session_token

pytestmark = [pytest.mark.timeout(180)]

ZG = 10**18
ORIGIN = "https://app.example.org"
#: B2's handler list plus this gateway's ``ZG-Res-Signature`` (signed async job answers carry it)
HANDLER_EXPOSED = {"zg-res-key", "zg-res-signature", "retry-after"}


def _settings(devnet, tmp, provider, port: int, **kw) -> ProviderSettings:
    return devnet_gateway_settings(
        devnet,
        provider,
        tmp,
        port=port,
        tee_signer_key="0x" + "22" * 32,
        model="wire-model",
        input_price=1,
        output_price=2,
        target_url="http://127.0.0.1:9",
        **kw,
    )


def _contract(devnet, account) -> InferenceServingContract:
    w3 = connect(devnet.rpc_url)
    return InferenceServingContract(w3, devnet.inference_address, TransactionSender(w3, account))


@pytest.fixture(scope="module")
def gateway(devnet, tmp_path_factory):
    from broker.devnet import fund_new_account

    tmp = tmp_path_factory.mktemp("wire")
    provider = fund_new_account(devnet, amount_neuron=1000 * ZG)
    port = free_port()
    # the test client on loopback plays the reverse proxy that names each client in XFF
    settings = _settings(
        devnet, tmp, provider, port, trusted_proxies=["127.0.0.1"], max_body_bytes=1 << 20
    )
    signer = LocalTeeSigner(bytes.fromhex("22" * 32))
    register_acknowledged_service(devnet, provider, settings, signer.address)
    gw = build_gateway(settings, signer=signer, with_scheduler=False)
    with UvicornThread(create_app(gw), port, start_polls=250) as server:
        yield {"gw": gw, "url": server.url, "provider": provider}
    gw.db.dispose()


def _ip() -> dict[str, str]:
    """A client IP of its own (the buckets key on X-Forwarded-For from a trusted proxy)."""
    n = uuid.uuid4().int
    return {"X-Forwarded-For": f"10.{n % 250}.{(n >> 8) % 250}.{(n >> 16) % 250}"}


# ---------------------------------------------------------------------------------- B2 CORS


def _csv(value: str | None) -> set[str]:
    return {v.strip().lower() for v in (value or "").split(",") if v.strip()}


def test_handler_routes_cors_is_star_with_authorization(gateway):
    with httpx.Client(base_url=gateway["url"], timeout=10) as c:
        for path in ("/v1/quote", "/v1/models"):
            r = c.get(path, headers={"Origin": ORIGIN, **_ip()})
            assert r.status_code == 200, r.text
            assert r.headers["access-control-allow-origin"] == "*"
            assert "access-control-allow-credentials" not in r.headers
            assert _csv(r.headers["access-control-expose-headers"]) == HANDLER_EXPOSED
            assert "authorization" in _csv(r.headers["access-control-allow-headers"])
        # errors carry the policy too (the SDK reads them from a browser)
        r = c.get("/v1/user/0x" + "00" * 20 + "/unsettledfee", headers={"Origin": ORIGIN, **_ip()})
        assert r.status_code == 400
        assert r.headers["access-control-allow-origin"] == "*"
        # preflights: 204, empty, without reaching the routes (no auth asked)
        for path in (
            "/v1/user/0x" + "00" * 20 + "/unsettledfee",
            "/v1/quote",
            "/v1/async/images/generations",
            "/v1/models",
        ):
            r = c.options(
                path,
                headers={
                    "Origin": ORIGIN,
                    "Access-Control-Request-Method": "GET",
                    "Access-Control-Request-Headers": "authorization",
                    **_ip(),
                },
            )
            assert r.status_code == 204, (path, r.status_code, r.text)
            assert r.content == b""
            assert r.headers["access-control-allow-origin"] == "*"
            assert "authorization" in _csv(r.headers["access-control-allow-headers"])
            assert _csv(r.headers["access-control-expose-headers"]) == HANDLER_EXPOSED
        # outside /v1: no CORS at all
        r = c.get("/health", headers={"Origin": ORIGIN})
        assert r.status_code == 200
        assert "access-control-allow-origin" not in r.headers


def test_proxy_cors_reflects_origin_with_credentials(gateway):
    with httpx.Client(base_url=gateway["url"], timeout=10) as c:
        r = c.get("/v1/proxy/signature/" + str(uuid.uuid4()), headers={"Origin": ORIGIN, **_ip()})
        assert r.status_code == 400  # unknown chat id (B7), still with the CORS headers
        assert r.headers["access-control-allow-origin"] == ORIGIN
        assert r.headers["access-control-allow-credentials"] == "true"
        assert _csv(r.headers["access-control-expose-headers"]) == {
            "zg-res-key",
            "zg-res-signature",  # this gateway's extension (module billed)
            "provider",
            "content-type",
            "content-encoding",
        }
        pre = {
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, x-requested-with",
        }
        r = c.options("/v1/proxy/chat/completions", headers={**pre, **_ip()})
        assert r.status_code == 204, r.text
        assert r.headers["access-control-allow-origin"] == ORIGIN
        assert r.headers["access-control-allow-credentials"] == "true"
        assert r.headers["access-control-max-age"] == str(12 * 3600)
        assert {"content-type", "authorization", "x-requested-with", "accept", "origin"} <= _csv(
            r.headers["access-control-allow-headers"]
        )
        # a header outside the list is refused
        r = c.options(
            "/v1/proxy/chat/completions",
            headers={**pre, "Access-Control-Request-Headers": "x-secret-thing", **_ip()},
        )
        assert r.status_code >= 400
        assert r.headers.get("access-control-allow-origin") != "*"


# ---------------------------------------------------------------------------------- B6 limits


def test_handler_ip_bucket_defaults_are_b6():
    lim = Limits()
    assert (lim.handler_ip.rate, lim.handler_ip.burst) == (10.0, 20)
    assert (lim.ip.rate, lim.ip.burst) == (15.0, 20)
    settings = ProviderSettings(_env_file=None)
    assert (settings.handler_ip_rps, settings.handler_ip_burst) == (10.0, 20)
    lim = Limits(per_ip_rps=3, per_ip_burst=2, handler_ip_rps=1, handler_ip_burst=1)
    lim.check_handler_ip("a")
    with pytest.raises(Exception) as info:
        lim.check_handler_ip("a")
    assert info.value.status_code == 429 and info.value.retry_after >= 1
    lim.check_ip("a"), lim.check_ip("a")  # the proxy bucket is separate


def test_handler_routes_share_a_per_ip_bucket_apart_from_the_proxy(gateway):
    gw = gateway["gw"]
    assert (gw.limits.handler_ip.rate, gw.limits.handler_ip.burst) == (10.0, 20)
    ip = _ip()
    user_path = "/v1/user/0x" + "00" * 20 + "/unsettledfee"
    with httpx.Client(base_url=gateway["url"], timeout=10) as c:
        # the configured bucket: a burst of 20, then 429 (refills at 10/s only)
        codes = [
            c.get("/v1/models" if i % 2 else "/v1/quote", headers=ip).status_code for i in range(60)
        ]
        assert codes[:20] == [200] * 20
        assert 429 in codes
        time.sleep(0.35)  # 10/s: tokens again
        assert c.get("/v1/models", headers=ip).status_code == 200
        # which routes share the bucket: a bucket that does not refill during the test
        real = gw.limits
        gw.limits = Limits(handler_ip_rps=0.001, handler_ip_burst=2, trusted_proxies=["127.0.0.1"])
        try:
            assert c.get("/v1/models", headers=ip).status_code == 200
            assert c.get("/v1/quote", headers=ip).status_code == 200
            r = c.get("/v1/models", headers=ip)
            assert r.status_code == 429
            assert r.json() == {"error": IP_MESSAGE}
            assert int(r.headers["retry-after"]) >= 1
            # unsettledfee and the async routes use it too (refused before authentication)
            assert c.get(user_path, headers=ip).status_code == 429
            assert c.post("/v1/async/images/generations", headers=ip, json={}).status_code == 429
            assert c.get("/v1/async/jobs/abc", headers=ip).status_code == 429
            # the /v1/proxy bucket of the same IP is untouched: the B7 answer, not 429
            r = c.get("/v1/proxy/signature/" + str(uuid.uuid4()), headers=ip)
            assert r.status_code == 400 and "chat_id_not_found" in r.json()["error"]
            # another IP is not affected
            assert c.get("/v1/models", headers=_ip()).status_code == 200
        finally:
            gw.limits = real


def test_proxy_signature_route_uses_the_proxy_ip_bucket(gateway):
    ip = _ip()
    with httpx.Client(base_url=gateway["url"], timeout=10) as c:
        codes = [
            c.get(f"/v1/proxy/signature/{uuid.uuid4()}", headers=ip).status_code for _ in range(45)
        ]
    assert codes[:20] == [400] * 20
    assert 429 in codes


def test_proxy_checks_run_in_order_route_ip_global_body(gateway):
    """The order of the route dependencies (module dependencies): an unsupported route is refused
    before any limit is spent, the per-IP bucket before the global cap, the global cap before the
    body is read, and the body cap before the token."""
    gw = gateway["gw"]
    real = gw.limits
    ip = _ip()
    big = b"x" * (gw.settings.max_body_bytes + 1)
    gw.limits = Limits(
        per_ip_rps=0.001, per_ip_burst=2, max_global_concurrent=0, trusted_proxies=["127.0.0.1"]
    )
    try:
        with httpx.Client(base_url=gateway["url"], timeout=10) as c:
            for _ in range(5):  # no IP token spent, no slot asked for
                r = c.post("/v1/proxy/nope", headers=ip, content=big)
                assert r.status_code == 400 and "unsupported endpoint" in r.json()["error"]
            for _ in range(2):  # the IP bucket passes, the global cap (0) refuses: no body read
                r = c.post("/v1/proxy/chat/completions", headers=ip, content=big)
                assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
            r = c.post("/v1/proxy/chat/completions", headers=ip, content=big)
            assert r.status_code == 429 and r.json() == {"error": IP_MESSAGE}
    finally:
        gw.limits = real
    with httpx.Client(base_url=gateway["url"], timeout=10) as c:
        r = c.post("/v1/proxy/chat/completions", headers=_ip(), content=big)
        assert r.status_code == 413, r.text
        assert r.json() == {"error": "Request body size exceeds the maximum allowed size of 1MB"}
        r = c.post("/v1/proxy/chat/completions", headers=_ip(), json={"messages": []})
        assert r.status_code == 400 and r.json()["error"].startswith("validate session")
    assert real.global_inflight.count() == 0


def test_unreachable_backend_fails_the_request_and_frees_the_slots(gateway, devnet, fresh_account):
    """The failure path of a billed request (module billed): the backend is down (this gateway's
    target is a closed port), so the ``pending`` row is failed, nothing is charged, both in-flight
    slots are released and the client gets 502 in the gateway's shape; a free ``/v1/proxy`` route
    answers 502 too, never a bare 500."""
    gw, provider, user = gateway["gw"], gateway["provider"], fresh_account
    w3 = connect(devnet.rpc_url)
    ledger = LedgerManagerContract(w3, devnet.ledger_address, TransactionSender(w3, user))
    ledger.add_ledger("", 10 * ZG)
    ledger.transfer_fund(provider.address, "inference-v1.0", 5 * ZG)
    token = sign_session_token(new_session_token(user.address, provider.address), user)
    before = request_counts(gw.db)
    chat = {"model": "wire-model", "messages": [{"role": "user", "content": "hi"}]}
    with httpx.Client(base_url=gateway["url"], timeout=30) as c:
        r = c.post(
            "/v1/proxy/chat/completions",
            json=chat,
            headers={"Authorization": authorization_header(token), **_ip()},
        )
        assert r.status_code == 502, r.text
        # the cause is named by the client library's exception type (aiohttp's connector error)
        assert r.json()["error"].startswith("forward request: backend unreachable (")
        assert "Connect" in r.json()["error"] and "Traceback" not in r.text
        assert "ZG-Res-Key" not in r.headers
        free = c.get("/v1/proxy/attestation/report", headers=_ip())
        assert free.status_code == 502, free.text
        assert free.json()["error"].startswith("forward request: backend unreachable")
    after = request_counts(gw.db)
    assert after["failed"] == before["failed"] + 1
    assert after["pending"] == before["pending"]
    assert gw.ledger.unsettled_fee(user.address) == 0
    assert gw.limits.user_inflight.count(user.address.lower()) == 0
    assert gw.limits.global_inflight.count() == 0


# ---------------------------------------------------------------------------------- B11


def test_sync_service_removes_the_service_when_serving_url_is_empty(
    devnet, tmp_path, fresh_account
):
    provider = fresh_account
    contract = _contract(devnet, provider)
    w3 = contract.w3 if hasattr(contract, "w3") else connect(devnet.rpc_url)
    settings = _settings(devnet, tmp_path, provider, 1)
    signer = LocalTeeSigner(bytes.fromhex("22" * 32))
    empty = settings.model_copy(update={"serving_url": ""})
    assert register_service(contract, empty, signer.address) == "absent"
    with pytest.raises(ContractRevertError):
        contract.get_service(provider.address)
    assert register_service(contract, settings, signer.address) == "registered"
    assert contract.get_service(provider.address).url == settings.serving_url
    staked = w3.eth.get_balance(provider.address)
    assert register_service(contract, empty, signer.address) == "removed"
    with pytest.raises(ContractRevertError) as info:
        contract.get_service(provider.address)
    assert info.value.error_name == "ServiceNotExist"
    # removeService returned the 100 0G stake (less gas)
    assert w3.eth.get_balance(provider.address) - staked > 99 * ZG
    assert register_service(contract, empty, signer.address) == "absent"


# ---------------------------------------------------------------------------------- B9 sum


def test_unsettled_fee_is_exact_beyond_int64(tmp_path):
    """The SQL sum splits the decimal strings, so fees and totals above 2**63 stay exact."""
    ledger = FeeLedger(open_database(f"sqlite:///{tmp_path / 'fees.db'}"))
    user, other = "0x" + "ab" * 20, "0x" + "cd" * 20
    fees = [7, 10**9, 10**9 - 1, 123_456_789_012, 2**64 + 5, 3 * 10**27 + 999_999_999, 0]
    for i, fee in enumerate(fees):
        rid = f"r{i}"
        ledger.open_request(rid, user, "chatbot", "m")
        ledger.bill(rid, Fee(0, 1, 0, fee))
    ledger.open_request("pending", user, "chatbot", "m")  # fee 0, outstanding
    ledger.open_request("failed", user, "chatbot", "m")
    ledger.fail("failed")
    ledger.open_request("o1", other, "chatbot", "m")
    ledger.bill("o1", Fee(0, 1, 0, 2**70))
    assert ledger.unsettled_fee(user) == sum(fees)
    assert ledger.unsettled_fee(other) == 2**70
    assert ledger.unsettled_fee("0x" + "ef" * 20) == 0
    # beyond what the split sum can hold: summed in Python, still exact
    ledger.open_request("huge", other, "chatbot", "m")
    ledger.bill("huge", Fee(0, 1, 0, 2**100))
    assert ledger.unsettled_fee(other) == 2**70 + 2**100
    for i in range(12):  # highs overflowing SUM itself
        ledger.open_request(f"big{i}", user, "chatbot", "m")
        ledger.bill(f"big{i}", Fee(0, 1, 0, 9 * 10**26 + i))
    assert ledger.unsettled_fee(user) == sum(fees) + 12 * 9 * 10**26 + sum(range(12))
    ledger.db.dispose()


def test_verified_token_cache_still_checks_expiry_and_forgery(gateway, fresh_account):
    """B3 check 9: a verified header is remembered, but check 7 (expiry) runs on every request
    and a different signature over the same message is verified in full."""
    gw, provider = gateway["gw"], gateway["provider"]
    user = fresh_account
    now_ms = int(time.time() * 1000)
    tok = new_session_token(
        user.address,
        provider.address,
        timestamp_ms=now_ms,
        duration_ms=(now_ms // 1000 + 2) * 1000 - now_ms,
    )
    header = authorization_header(sign_session_token(tok, user))
    assert gw.auth.authenticate(header) == user.address
    assert gw.auth.authenticate(header) == user.address  # served from the cache
    forged = authorization_header(sign_session_token(tok, Account.create()))
    with pytest.raises(SessionValidationError, match="address mismatch"):
        gw.auth.authenticate(forged)
    time.sleep(3.2)
    with pytest.raises(SessionValidationError, match="session token expired"):
        gw.auth.authenticate(header)


def test_tee_signer_sign_text_matches_eth_account():
    """The libsecp256k1 fast path gives eth_account's personal_sign bytes (B7)."""
    for i in range(40):
        key = bytes([i + 1]) * 32
        text = f"{i:x}" * 32 + ":" + "é" * i
        expected = Account.from_key(key).sign_message(encode_defunct(text=text)).signature
        assert LocalTeeSigner(key).sign_text(text) == "0x" + bytes(expected).hex()
