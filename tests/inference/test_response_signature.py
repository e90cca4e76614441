"""Response-signature verification (user-broker.md §8.2) against a real loopback HTTP server."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import socket
import time

import aiohttp
import httpx
import pytest
from devnet_helpers import C2_SIG, C2_TEXT, MOCK_TEE_ADDR, MOCK_TEE_KEY
from eth_account import Account
from eth_account.messages import encode_defunct
from signature_helpers import drip_server, malleate

from broker import BrokerError
from broker.inference.errors import InvalidChatIdError
from broker.inference.models import Service
from broker.inference.response_signature import (
    CHAT_ID_MAX_CHARS,
    SIGNATURE_MAX_BYTES,
    VerificationReason,
    averify_response_signature,
    recover_text_signer,
    select_signing_address,
    signature_url,
    verify_response_signature,
)
from broker.proxy.upstream import SignatureClient

NOT_FOUND = {"error": "prepare HTTP request: Chat id not found or expired, chat_id_not_found"}

TEE_KEY = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"
TEE_ADDR = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"


def _service(url: str, **overrides) -> Service:
    base = {
        "provider": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8", "service_type": "chatbot",
        "url": url, "input_price": 1, "output_price": 2, "updated_at": 0, "model": "org/model v1",
        "verifiability": "TeeML",
        "additional_info": '{"ProviderType":"decentralized"}', "tee_signer_address": MOCK_TEE_ADDR,
        "tee_signer_acknowledged": True,
    }  # fmt: skip
    base.update(overrides)
    return Service(**base)


def _sign(text: str, key: str) -> str:
    return "0x" + bytes(Account.sign_message(encode_defunct(text=text), key).signature).hex()


def test_vectors_section3_and_c2():
    assert _sign("example-signed-text", TEE_KEY) == (
        "0x48c7a4309c5281382240cf8f05fb8609fcb5e0ec5a1f52eeecd73837b33665af5f806197337976a57f8123"
        "ac746c28b1f43d016ba81f0822feded7226782bee01c"
    )
    assert (
        recover_text_signer("example-signed-text", _sign("example-signed-text", TEE_KEY))
        == TEE_ADDR
    )
    req = b'{"model":"m","messages":[{"role":"user","content":"hi"}]}'
    res = (
        b'{"id":"x","choices":[],"usage":'
        b'{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}'
    )
    assert hashlib.sha256(req).hexdigest() + ":" + hashlib.sha256(res).hexdigest() == C2_TEXT
    assert _sign(C2_TEXT, MOCK_TEE_KEY) == C2_SIG
    assert recover_text_signer(C2_TEXT, C2_SIG) == MOCK_TEE_ADDR


def test_signature_url_encodes_chat_id_and_model():
    url = signature_url("http://h:1/", "a/b?c d", "org/model v1")
    assert url == "http://h:1/v1/proxy/signature/a%2Fb%3Fc%20d?model=org%2Fmodel+v1"


def test_valid_signature_verifies(fake_provider):
    chat_id = "chatcmpl/ü 1"
    fake_provider.set_signature(
        chat_id,
        200,
        {
            "text": C2_TEXT,
            "signature": C2_SIG,
            "signing_address": MOCK_TEE_ADDR,
            "signing_algo": "ecdsa",
        },
    )
    result = verify_response_signature(_service(fake_provider.url), chat_id)
    assert result.verified is True and result.reason is VerificationReason.VERIFIED
    assert result.signer == MOCK_TEE_ADDR and result.recovered == MOCK_TEE_ADDR
    path, headers = fake_provider.requests[-1]
    assert path == "/v1/proxy/signature/chatcmpl%2F%C3%BC%201?model=org%2Fmodel+v1"
    assert "authorization" not in {k.lower() for k in headers}


def test_forged_and_wrong_signer(fake_provider):
    forged = C2_SIG[:20] + ("1" if C2_SIG[20] != "1" else "2") + C2_SIG[21:]
    fake_provider.set_signature("forged", 200, {"text": C2_TEXT, "signature": forged})
    result = verify_response_signature(_service(fake_provider.url), "forged")
    assert result.verified is False
    assert result.reason in (
        VerificationReason.SIGNATURE_MISMATCH,
        VerificationReason.SIGNATURE_MALFORMED,
    )
    # a valid signature by another key (the signing_address field is ignored, as in the SDK)
    fake_provider.set_signature(
        "other",
        200,
        {"text": C2_TEXT, "signature": _sign(C2_TEXT, TEE_KEY), "signing_address": MOCK_TEE_ADDR},
    )
    result = verify_response_signature(_service(fake_provider.url), "other")
    assert result.verified is False and result.reason is VerificationReason.SIGNATURE_MISMATCH
    assert result.recovered == TEE_ADDR
    # text tampered after signing
    fake_provider.set_signature("tampered", 200, {"text": C2_TEXT + "0", "signature": C2_SIG})
    assert verify_response_signature(_service(fake_provider.url), "tampered").verified is False
    fake_provider.set_signature("short", 200, {"text": C2_TEXT, "signature": "0x1234"})
    result = verify_response_signature(_service(fake_provider.url), "short")
    assert (result.verified, result.reason) == (False, VerificationReason.SIGNATURE_MALFORMED)


def test_http_errors_return_unavailable(fake_provider):
    fake_provider.set_signature(
        "gone",
        400,
        {"error": "prepare HTTP request: Chat id not found or expired, chat_id_not_found"},
    )
    result = verify_response_signature(_service(fake_provider.url), "gone", not_found_backoff=0.01)
    assert (result.verified, result.reason) == (False, VerificationReason.SIGNATURE_UNAVAILABLE)
    assert "400" in result.detail and "Chat id not found" in result.detail
    fake_provider.set_signature("html", 200, b"<html>oops</html>")
    result = verify_response_signature(_service(fake_provider.url), "html")
    assert result.reason is VerificationReason.SIGNATURE_UNAVAILABLE


def test_unreachable_endpoint_returns_unavailable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = verify_response_signature(_service(f"http://127.0.0.1:{port}"), "x", timeout=2)
    assert (result.verified, result.reason) == (False, VerificationReason.SIGNATURE_UNAVAILABLE)


@pytest.mark.parametrize(
    "overrides, reason",
    [
        ({"verifiability": ""}, VerificationReason.NOT_VERIFIABLE),
        ({"verifiability": "teeml"}, VerificationReason.NOT_VERIFIABLE),
        ({"tee_signer_acknowledged": False}, VerificationReason.SIGNER_NOT_ACKNOWLEDGED),
        ({"additional_info": ""}, VerificationReason.ADDITIONAL_INFO_MISSING),
        ({"additional_info": "{not json"}, VerificationReason.ADDITIONAL_INFO_INVALID),
    ],
)
def test_not_verifiable_services_return_false_without_fetching(fake_provider, overrides, reason):
    result = verify_response_signature(_service(fake_provider.url, **overrides), "id")
    assert (result.verified, result.reason) == (False, reason)
    assert fake_provider.requests == []


def test_no_chat_id_returns_none(fake_provider):
    result = verify_response_signature(_service(fake_provider.url), None)
    assert result.verified is None and result.reason is VerificationReason.NO_CHAT_ID
    assert verify_response_signature(_service(fake_provider.url), "").verified is None


def test_signer_selection_table():
    target = "0x" + "ab" * 20
    svc = _service("http://x")
    cases = [
        ({"TargetSeparated": True, "TargetTeeAddress": target}, target),
        (
            {"TargetSeparated": True, "TargetTeeAddress": target, "ProviderType": "centralized"},
            MOCK_TEE_ADDR,
        ),
        ({"TargetSeparated": True, "TargetTeeAddress": ""}, MOCK_TEE_ADDR),
        ({"TargetSeparated": "true", "TargetTeeAddress": target}, MOCK_TEE_ADDR),
        ({"TargetTeeAddress": target}, MOCK_TEE_ADDR),
        ({"TargetSeparated": True, "TargetTeeAddress": target, "ProviderType": "weird"}, target),
    ]
    for info, expected in cases:
        assert (
            select_signing_address(dataclasses.replace(svc, additional_info=json.dumps(info)), info)
            == expected
        ), info


def test_target_separated_signer_is_used(fake_provider):
    target_key = Account.create()
    text = "abc:def"
    fake_provider.set_signature(
        "sep", 200, {"text": text, "signature": _sign(text, target_key.key)}
    )
    info = json.dumps({"TargetSeparated": True, "TargetTeeAddress": target_key.address})
    result = verify_response_signature(_service(fake_provider.url, additional_info=info), "sep")
    assert result.verified is True and result.signer == target_key.address


async def test_async_variant(fake_provider):
    fake_provider.set_signature("a1", 200, {"text": C2_TEXT, "signature": C2_SIG})
    async with httpx.AsyncClient() as client:
        ok = await averify_response_signature(_service(fake_provider.url), "a1", client=client)
        missing = await averify_response_signature(
            _service(fake_provider.url), "nope", client=client
        )
    assert ok.verified is True
    assert (missing.verified, missing.reason) == (False, VerificationReason.SIGNATURE_UNAVAILABLE)


def _signature_requests(fake_provider, chat_id: str) -> int:
    return sum(
        1
        for path, _ in fake_provider.requests
        if path.startswith(f"/v1/proxy/signature/{chat_id}?")
    )


def test_signature_stored_late_is_retried(fake_provider):
    """The provider stores the signature a moment after the stream ends: the first fetches answer
    the B7 not-found error, a later one the signature."""
    fake_provider.queue_signature("late", 400, NOT_FOUND, times=2)
    fake_provider.set_signature("late", 200, {"text": C2_TEXT, "signature": C2_SIG})
    started = time.monotonic()
    result = verify_response_signature(_service(fake_provider.url), "late")
    elapsed = time.monotonic() - started
    assert result.verified is True and result.reason is VerificationReason.VERIFIED
    assert _signature_requests(fake_provider, "late") == 3
    assert 1.4 <= elapsed < 3.0  # waited 0.5 s + 1.0 s


def test_not_found_retries_are_bounded(fake_provider):
    fake_provider.set_signature("never", 400, NOT_FOUND)
    started = time.monotonic()
    result = verify_response_signature(_service(fake_provider.url), "never", not_found_backoff=0.05)
    assert time.monotonic() - started < 1.0
    assert (result.verified, result.reason) == (False, VerificationReason.SIGNATURE_UNAVAILABLE)
    assert "chat_id_not_found" in result.detail
    assert _signature_requests(fake_provider, "never") == 3
    one = verify_response_signature(_service(fake_provider.url), "never", not_found_attempts=1)
    assert one.verified is False and _signature_requests(fake_provider, "never") == 4
    with pytest.raises(ValueError):
        verify_response_signature(_service(fake_provider.url), "never", not_found_attempts=0)


def test_other_failures_are_not_retried(fake_provider):
    fake_provider.set_signature("boom", 500, {"error": "internal"})
    fake_provider.set_signature("forbidden", 403, {"error": "forbidden"})
    for chat_id in ("boom", "forbidden", "unrouted"):  # "unrouted": the server's plain 404
        result = verify_response_signature(_service(fake_provider.url), chat_id)
        assert result.reason is VerificationReason.SIGNATURE_UNAVAILABLE
        assert _signature_requests(fake_provider, chat_id) == 1
    fake_provider.set_signature("bad", 200, {"text": C2_TEXT, "signature": "0x1234"})
    assert (
        verify_response_signature(_service(fake_provider.url), "bad").reason
        is VerificationReason.SIGNATURE_MALFORMED
    )
    assert _signature_requests(fake_provider, "bad") == 1


async def test_async_signature_stored_late_is_retried(fake_provider):
    fake_provider.queue_signature("alate", 400, NOT_FOUND)
    fake_provider.set_signature("alate", 200, {"text": C2_TEXT, "signature": C2_SIG})
    async with httpx.AsyncClient() as client:
        result = await averify_response_signature(
            _service(fake_provider.url), "alate", client=client, not_found_backoff=0.05
        )
        never = await averify_response_signature(
            _service(fake_provider.url), "agone", client=client, not_found_backoff=0.01
        )
    assert result.verified is True and _signature_requests(fake_provider, "alate") == 2
    assert never.verified is False and _signature_requests(fake_provider, "agone") == 1


async def test_async_not_found_retries_are_bounded(fake_provider):
    fake_provider.set_signature("anever", 400, NOT_FOUND)
    result = await averify_response_signature(
        _service(fake_provider.url), "anever", not_found_attempts=2, not_found_backoff=0.01
    )
    assert result.reason is VerificationReason.SIGNATURE_UNAVAILABLE
    assert _signature_requests(fake_provider, "anever") == 2


# -- attacks by a tampering relay or a hostile provider ------------------------------------------


@pytest.mark.parametrize("chat_id", ["..", "."])
def test_dot_segment_chat_id_is_refused_without_fetching(fake_provider, chat_id):
    """A chat id of ``..`` made the signature URL ``.../signature/..``, which every HTTP client
    normalises to ``/v1/proxy``: the fetch left the signature endpoint, and a signature served
    there verified the response. Such ids are refused before any request."""
    fake_provider.responses["/v1/proxy"] = (200, {"text": C2_TEXT, "signature": C2_SIG})
    fake_provider.responses["/v1/proxy/signature"] = (200, {"text": C2_TEXT, "signature": C2_SIG})
    result = verify_response_signature(_service(fake_provider.url), chat_id)
    assert (result.verified, result.reason) == (False, VerificationReason.CHAT_ID_INVALID)
    assert fake_provider.requests == []
    with pytest.raises(InvalidChatIdError) as info:
        signature_url(fake_provider.url, chat_id, "m")
    assert isinstance(info.value, BrokerError)


@pytest.mark.parametrize(
    "chat_id", ["c" * (CHAT_ID_MAX_CHARS + 1), "id\nWARNING forged log line", "id\x00", "a\u2028b"]
)
def test_overlong_or_control_character_chat_id_is_refused_without_fetching(fake_provider, chat_id):
    """An endless id (an endless URL, stored in the verification log) or one with control
    characters (a body ``id`` may carry line breaks into log lines) is refused before any fetch;
    the id kept in the result is shortened and escaped."""
    fake_provider.set_signature(chat_id, 200, {"text": C2_TEXT, "signature": C2_SIG})
    result = verify_response_signature(_service(fake_provider.url), chat_id)
    assert (result.verified, result.reason) == (False, VerificationReason.CHAT_ID_INVALID)
    assert fake_provider.requests == []
    assert len(result.chat_id) <= 2 * CHAT_ID_MAX_CHARS and result.chat_id.isprintable()
    assert signature_url("http://h:1", "c" * CHAT_ID_MAX_CHARS, "m").startswith("http://h:1/v1/")


async def test_async_dot_segment_chat_id_is_refused_without_fetching(fake_provider):
    fake_provider.responses["/v1/proxy"] = (200, {"text": C2_TEXT, "signature": C2_SIG})
    async with httpx.AsyncClient() as client:
        result = await averify_response_signature(_service(fake_provider.url), "..", client=client)
    assert (result.verified, result.reason) == (False, VerificationReason.CHAT_ID_INVALID)
    assert fake_provider.requests == []


def _padded_signature_answer(size: int) -> bytes:
    """A genuine B7 answer padded with an extra field to ``size`` bytes."""
    head = json.dumps({"text": C2_TEXT, "signature": C2_SIG, "pad": ""}).encode()
    return head[:-2] + b"x" * (size - len(head)) + b'"}'


def test_oversized_signature_answer_is_refused(fake_provider):
    """The signature endpoint's answer is read at most SIGNATURE_MAX_BYTES: a hostile provider
    (or relay) cannot make the user side buffer an endless body."""
    fake_provider.set_signature("big", 200, _padded_signature_answer(SIGNATURE_MAX_BYTES + 1))
    fake_provider.set_signature("fits", 200, _padded_signature_answer(SIGNATURE_MAX_BYTES))
    big = verify_response_signature(_service(fake_provider.url), "big")
    assert (big.verified, big.reason) == (False, VerificationReason.SIGNATURE_UNAVAILABLE)
    assert f"larger than {SIGNATURE_MAX_BYTES} bytes" in big.detail
    assert verify_response_signature(_service(fake_provider.url), "fits").verified is True


async def test_async_oversized_signature_answer_is_refused(fake_provider):
    """Same cap for the async verifier: its own client, an ``httpx.AsyncClient`` and serve's
    aiohttp-based :class:`SignatureClient` (which stops reading past the cap)."""
    fake_provider.set_signature("big", 200, _padded_signature_answer(SIGNATURE_MAX_BYTES + 1))
    fake_provider.set_signature("fits", 200, _padded_signature_answer(SIGNATURE_MAX_BYTES))
    async with httpx.AsyncClient() as client, aiohttp.ClientSession() as session:
        for used in (None, client, SignatureClient(session)):
            service = _service(fake_provider.url)
            big = await averify_response_signature(service, "big", client=used)
            assert (big.verified, big.reason) == (False, VerificationReason.SIGNATURE_UNAVAILABLE)
            assert f"larger than {SIGNATURE_MAX_BYTES} bytes" in big.detail
            fits = await averify_response_signature(service, "fits", client=used)
            assert fits.verified is True


def test_malleated_signature_is_refused(fake_provider):
    """``(r, n - s)`` recovers to the same signer over the same text; no honest signer makes it
    (libsecp256k1 signs low-s), so it is refused as malformed rather than verified."""
    fake_provider.set_signature("m1", 200, {"text": C2_TEXT, "signature": malleate(C2_SIG)})
    result = verify_response_signature(_service(fake_provider.url), "m1")
    assert (result.verified, result.reason) == (False, VerificationReason.SIGNATURE_MALFORMED)
    assert "not canonical" in result.detail
    with pytest.raises(ValueError, match="not canonical"):
        recover_text_signer(C2_TEXT, malleate(C2_SIG))
    with pytest.raises(ValueError, match="not hex"):  # another spelling of the same signature
        recover_text_signer(C2_TEXT, C2_SIG[:10] + " " + C2_SIG[10:])
    assert recover_text_signer(C2_TEXT, C2_SIG) == MOCK_TEE_ADDR


def test_deeply_nested_signature_answer_is_unavailable_not_a_crash(fake_provider):
    """Nested arrays under the size cap raised RecursionError out of a verifier that never
    raises (serve answered 500)."""
    fake_provider.set_signature("deep", 200, b"[" * (SIGNATURE_MAX_BYTES // 2))
    result = verify_response_signature(_service(fake_provider.url), "deep")
    assert (result.verified, result.reason) == (False, VerificationReason.SIGNATURE_UNAVAILABLE)
    assert "not JSON" in result.detail


async def test_slow_drip_signature_answer_ends_at_the_timeout():
    """httpx's timeout bounds each read, not the answer: a provider dripping its signature answer
    one byte at a time held the verifier (and the user's call) for as long as it liked. The whole
    answer must come within ``timeout`` seconds."""
    body = json.dumps({"text": C2_TEXT, "signature": C2_SIG}).encode()
    with drip_server(body, 0.05) as url:
        started = time.monotonic()
        result = verify_response_signature(_service(url), "slow", timeout=0.5)
        assert time.monotonic() - started < 3
        assert (result.verified, result.reason) == (False, VerificationReason.SIGNATURE_UNAVAILABLE)
        assert "within 0.5 s" in result.detail
        async with aiohttp.ClientSession() as session:
            for client in (None, SignatureClient(session)):
                started = time.monotonic()
                result = await averify_response_signature(
                    _service(url), "slow", timeout=0.5, client=client
                )
                assert time.monotonic() - started < 3 and "within 0.5 s" in result.detail


@pytest.mark.parametrize("url", ["http://[::1", "http://a\x00b"])
async def test_a_malformed_service_url_is_unavailable_not_a_crash(url):
    """The service URL is the provider's on-chain text: one httpx cannot parse raised InvalidURL
    (not an httpx.HTTPError) out of verifiers that never raise."""
    sync = verify_response_signature(_service(url), "c", timeout=2)
    assert (sync.verified, sync.reason) == (False, VerificationReason.SIGNATURE_UNAVAILABLE)
    async with aiohttp.ClientSession() as session:
        for client in (None, SignatureClient(session)):
            result = await averify_response_signature(_service(url), "c", client=client, timeout=2)
            assert (result.verified, result.reason) == (
                False,
                VerificationReason.SIGNATURE_UNAVAILABLE,
            )
