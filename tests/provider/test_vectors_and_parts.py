"""Pure parts of the gateway: C2/C3 vectors, fees, limits, the database ledger, signatures,
quote."""

from __future__ import annotations

import base64
import gzip
import json
import time
import zlib

import pytest
from pydantic import SecretStr

from broker.provider.billing import FeeLedger
from broker.provider.db import RequestStatus, open_database
from broker.provider.errors import (
    OverloadedError,
    ProviderConfigError,
    RateLimitedError,
    SignatureNotFoundError,
)
from broker.provider.forward import (
    decoded_body,
    forward_accept_encoding,
    forward_headers,
    normalise_route,
    rewrite_request,
)
from broker.provider.limits import Limits, TokenBucket, client_ip
from broker.provider.register import additional_info
from broker.provider.settings import ProviderSettings
from broker.provider.settlement import requests_hash, settlement_typed_data
from broker.provider.signing import SignatureStore, response_signature_text
from broker.provider.tee import LocalTeeSigner, load_tee_signer
from broker.wire.fees import compute_fee

MOCK_TEE_KEY = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe512961708279b7e1a8d7d7a3c2b9e3")
MOCK_TEE_ADDR = "0x325744be57db298C2652c672B32Eb12875d92D83"
USER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


def test_c3_settlement_signature():
    rhash = requests_hash(
        [
            ("11111111-1111-4111-8111-111111111111", USER, "3000", "1000", "2000"),
            ("22222222-2222-4222-8222-222222222222", USER, "500", "500", "0"),
        ]
    )
    assert rhash.hex() == "abde05883a6b9503d461fd07b0db2fd3da30a0a55794a76d6296241efc56b9a8"
    typed = settlement_typed_data(
        chain_id=16661,
        verifying_contract="0x47340d900bdFec2BD393c626E12ea0656F938d84",
        requests_hash=rhash,
        nonce=17000000000000000,
        provider="0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
        user=USER,
        total_fee=3500,
    )
    sig = LocalTeeSigner(MOCK_TEE_KEY).sign_typed_data(typed)
    assert sig.hex() == (
        "311e1b74de0d4753d9a402eb334e790fb68521e7e99e24067885f55a2a9cba1b27579d11116f25628f857d81"
        "b413448c7c748ed9949f41be6f51e94b128a7ba41c"
    )


def test_c2_response_signature(tmp_path):
    req = b'{"model":"m","messages":[{"role":"user","content":"hi"}]}'
    resp = (
        b'{"id":"x","choices":[],"usage":'
        b'{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}'
    )
    text = response_signature_text(req, resp)
    assert text == (
        "798d46639491d6c18f1779ddfca7da4b672f23a4cb57d66eeae48d9b8ccb6075:"
        "c0993b73008754c78bb31f82dac937b4ce524866efb1605fc11853cdfd436013"
    )
    store = SignatureStore(
        open_database(f"sqlite:///{tmp_path / 'g.db'}"), LocalTeeSigner(MOCK_TEE_KEY), ttl=60
    )
    stored = store.sign_and_store("ABC-1", req, resp)
    assert stored.signature == (
        "0x173f5550c0ab24b6b6d88ed339992373c183bf44f848b20de29994965d2e611948bfeb3c94fd74be89b3ae7"
        "cbec3514f0d2da69e279c01fa9b037d5942b32b701c"
    )
    # survives a "restart" (new store on the same file), looked up case-insensitively
    again = SignatureStore(
        open_database(f"sqlite:///{tmp_path / 'g.db'}"), LocalTeeSigner(MOCK_TEE_KEY)
    )
    assert again.get("abc-1") == stored
    with pytest.raises(SignatureNotFoundError) as err:
        again.get("nope")
    assert (
        err.value.message == "prepare HTTP request: Chat id not found or expired, chat_id_not_found"
    )


def test_fees_per_service_type():
    f = compute_fee("text-to-image", b'{"prompt":"x","n":3}', b"{}", input_price=7, output_price=10)
    assert (f.output_count, f.fee) == (3, 30)
    f = compute_fee(
        "chatbot",
        b"{}",
        b'{"usage":{"prompt_tokens":4,"completion_tokens":5}}',
        input_price=2,
        output_price=3,
    )
    assert (f.input_fee, f.output_fee, f.fee) == (8, 15, 23)
    sse = (
        b'data: {"choices":[{"delta":{"content":"a b"}}]}\n\n'
        b'data: {"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":9}}\n\n'
        b"data: [DONE]\n\n"
    )
    assert (
        compute_fee("chatbot", b"{}", sse, input_price=1, output_price=1, streamed=True).fee == 10
    )
    f = compute_fee(
        "speech-to-text",
        b"",
        b'{"text":"x","usage":{"type":"duration","seconds":207.5}}',
        input_price=2,
        output_price=100,
    )
    assert (f.input_count, f.fee) == (208, 416)


def test_fee_ledger_durable(tmp_path):
    url = f"sqlite:///{tmp_path / 'fees.db'}"
    ledger = FeeLedger(open_database(url))
    ledger.open_request("r1", USER, "text-to-image", "m")
    ledger.bill(
        "r1", compute_fee("text-to-image", b'{"n":2}', b"", input_price=0, output_price=10**18)
    )
    ledger.open_request("r2", USER, "text-to-image", "m")
    ledger.fail("r2")
    again = FeeLedger(open_database(url))
    assert again.unsettled_fee(USER) == 2 * 10**18  # exact beyond float precision
    assert again.users_with_unsettled() == [USER]
    with again.db.session() as s:
        from broker.provider.db import RequestRecord

        assert s.get(RequestRecord, "r2").status == RequestStatus.FAILED


def test_token_bucket_and_limits():
    b = TokenBucket(rate=0.5, burst=5)
    now = time.monotonic()
    assert [b.try_take(now) for _ in range(5)] == [0.0] * 5
    assert b.try_take(now) == pytest.approx(2.0)
    lim = Limits(
        per_user_rpm=30,
        per_user_burst=5,
        max_per_user_concurrent=5,
        max_global_concurrent=2,
        per_ip_rps=1,
        per_ip_burst=2,
    )
    for _ in range(5):
        lim.enter_user(USER)
    with pytest.raises(RateLimitedError) as err:
        lim.enter_user(USER)
    assert err.value.status_code == 429 and err.value.retry_after >= 1
    # six requests at once spend the burst of 5, not the 30/min rate: the message says so
    assert "(limit: burst of 5 requests, refilled at 30 requests/min)" in err.value.message
    lim.enter_global(), lim.enter_global()
    with pytest.raises(OverloadedError) as err:
        lim.enter_global()
    assert err.value.status_code == 503
    lim.check_ip("1.2.3.4"), lim.check_ip("1.2.3.4")
    with pytest.raises(RateLimitedError):
        lim.check_ip("1.2.3.4")
    lim.check_ip("5.6.7.8")
    # X-Forwarded-For counts only from a trusted proxy (see test_gateway_xff.py)
    assert client_ip({"x-forwarded-for": "9.9.9.9, 1.1.1.1"}, "127.0.0.1") == "127.0.0.1"


def test_concurrency_cap_is_separate_from_rate():
    lim = Limits(per_user_rpm=6000, per_user_burst=100, max_per_user_concurrent=2)
    lim.enter_user(USER), lim.enter_user(USER)
    with pytest.raises(RateLimitedError) as err:
        lim.enter_user(USER)
    assert "You have 2 active requests (limit: 2)" in err.value.message
    lim.leave_user(USER)
    lim.enter_user(USER)


def test_routes_and_rewrites():
    assert normalise_route("v1/chat/completions/") == "/chat/completions"
    assert normalise_route("images/generations") == "/images/generations"
    body = rewrite_request("chatbot", "/chat/completions", b'{"stream":true}', "application/json")
    assert json.loads(body)["stream_options"] == {"include_usage": True}


def test_no_tee_quote_and_key_file(tmp_path):
    plain = ProviderSettings(tee_key_file=tmp_path / "k.json", dstack_socket=tmp_path / "none.sock")
    with pytest.raises(ProviderConfigError, match="no TEE signer key"):
        load_tee_signer(plain)  # never a plain-text key file
    assert not (tmp_path / "k.json").exists()
    s = ProviderSettings(
        tee_key_file=tmp_path / "k.json",
        tee_key_password="pw",
        dstack_socket=tmp_path / "none.sock",
    )
    signer = load_tee_signer(s)
    assert (tmp_path / "k.json").stat().st_mode & 0o777 == 0o600
    assert load_tee_signer(s).address == signer.address  # generated once
    with pytest.raises(ProviderConfigError, match="wrong password"):
        load_tee_signer(s.model_copy(update={"tee_key_password": SecretStr("other")}))
    q = signer.quote()
    assert q["tee"] == "none" and q["attested"] is False and "quote" not in q
    assert "No TEE" in q["message"]
    rd = base64.b64decode(q["report_data"]).rstrip(b"\x00").decode()
    assert rd == signer.address
    assert "private" not in repr(signer).lower()
    enc = ProviderSettings(
        tee_key_file=tmp_path / "e.json",
        tee_key_password="pw",
        dstack_socket=tmp_path / "none.sock",
    )
    a = load_tee_signer(enc).address
    assert "crypto" in json.loads((tmp_path / "e.json").read_text())
    assert load_tee_signer(enc).address == a


def test_additional_info_sorted_compact():
    info = additional_info(ProviderSettings(verifier_url="v"))
    assert info == (
        '{"ImageDigest":"","ImageName":"","TEEVerifier":"dstack",'
        '"TargetSeparated":false,"TargetTeeAddress":"","VerifierURL":"v"}'
    )


def test_accept_encoding_forwarded_only_for_decodable_codings():
    assert forward_accept_encoding(None) == "identity"
    assert forward_accept_encoding("br, zstd") == "identity"
    assert forward_accept_encoding("gzip, deflate, br;q=0.9, zstd") == "gzip, deflate"
    assert forward_accept_encoding("GZIP;q=0.5, *") == "GZIP;q=0.5"
    out = forward_headers(
        {"authorization": "Bearer x", "accept-encoding": "br", "content-type": "application/json"},
        {"X-Api-Key": "k"},
    )
    assert out == {
        "accept-encoding": "identity",
        "content-type": "application/json",
        "X-Api-Key": "k",
    }


def test_decoded_body_for_billing():
    body = b'{"usage":{"prompt_tokens":1}}'
    assert decoded_body(gzip.compress(body), "gzip") == body
    assert decoded_body(zlib.compress(body), "deflate") == body
    raw_deflate = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    assert decoded_body(raw_deflate.compress(body) + raw_deflate.flush(), "Deflate") == body
    assert decoded_body(gzip.compress(gzip.compress(body)), "gzip, gzip") == body
    assert decoded_body(body, None) == body and decoded_body(body, "identity") == body
    assert decoded_body(b"not gzip", "gzip") == b"not gzip"  # corrupt: unchanged
    assert decoded_body(b"\x01\x02", "br") == b"\x01\x02"  # unknown coding: unchanged
    assert decoded_body(gzip.compress(b"x" * 1000), "gzip", limit=10) == b"x" * 10


def test_recent_signatures_answered_from_memory_only_once_committed(tmp_path):
    """The signature endpoint's memory holds what was committed, under the same keys as the
    database (an over-long alias is not stored either way), and forgets it when it expires."""

    store = SignatureStore(
        open_database(f"sqlite:///{tmp_path / 'm.db'}"), LocalTeeSigner(MOCK_TEE_KEY), ttl=60
    )
    req, resp = b'{"model":"m"}', b'{"id":"cmpl-1"}'
    stored = store.sign_and_store("CHAT-1", req, resp, aliases=("cmpl-1", "x" * 129))
    assert store.cached("chat-1") == stored == store.cached("CMPL-1")
    assert store.cached("x" * 129) is None
    # joined to a caller's transaction: nothing in memory until the caller remembers it
    with store.db.engine.begin() as conn:
        sig = store.sign_and_store("chat-2", req, resp, conn=conn)
    assert store.cached("chat-2") is None and store.get("chat-2") == sig
    store.remember(store.keys_for("chat-2"), sig)
    assert store.cached("chat-2") == sig
    store.ttl = -1  # entries remembered from now on are expired
    store.remember(["chat-3"], sig)
    assert store.cached("chat-3") is None
