"""Response verification bound to the bytes (issue: "verification must check the bytes that were
received"): the signed text must name sha256 of the request as forwarded and of the response as
received; typed reasons say which part failed; a rate-limited signature endpoint is retried after
its ``Retry-After``. Against a real loopback HTTP server (the ``fake_provider`` fixture)."""

from __future__ import annotations

import hashlib
import time

import httpx
from eth_account import Account
from eth_account.messages import encode_defunct
from test_response_signature import TEE_KEY, _service

from broker.inference.response_signature import (
    ResponseBinding,
    VerificationReason,
    averify_response_signature,
    verify_response_signature,
)
from broker.wire.signed_text import signed_text

MOCK_KEY = "0x4c0883a69102937d6231471b5dbb6204fe512961708279b7e1a8d7d7a3c2b9e3"
REQUEST = b'{"messages":[{"content":"hi","role":"user"}],"model":"m"}'
RESPONSE = b'{"id":"chatcmpl-1","choices":[{"message":{"content":"hello"}}]}'


def _signed(text: str, key: str = MOCK_KEY) -> dict:
    sig = Account.sign_message(encode_defunct(text=text), key).signature
    return {"text": text, "signature": "0x" + bytes(sig).hex()}


def test_binding_levels_and_reasons(fake_provider):
    fake_provider.set_signature("c1", 200, _signed(signed_text(REQUEST, RESPONSE)))
    service = _service(fake_provider.url)

    def check(binding):
        return verify_response_signature(service, "c1", binding=binding)

    full = check(ResponseBinding.of(request_body=REQUEST, response_body=RESPONSE))
    assert (full.verified, full.reason, full.binding) == (True, VerificationReason.VERIFIED, "full")
    assert full.signed_text == signed_text(REQUEST, RESPONSE)
    only = check(ResponseBinding.of(response_body=RESPONSE))
    assert (only.verified, only.binding) == (True, "response_only")
    assert "could not be reproduced" in only.detail
    sdk = check(None)  # the SDK's check: says so
    assert (sdk.verified, sdk.binding) == (True, "signature_only")
    # one byte of the response changed (e.g. one base64 character of an image)
    flipped = RESPONSE.replace(b"hello", b"hellp")
    bad = check(ResponseBinding.of(request_body=REQUEST, response_body=flipped))
    assert (bad.verified, bad.reason) == (False, VerificationReason.RESPONSE_HASH_MISMATCH)
    bad = check(ResponseBinding.of(response_body=flipped))
    assert bad.reason is VerificationReason.RESPONSE_HASH_MISMATCH  # never skipped
    # the request as forwarded differs
    bad = check(ResponseBinding.of(request_body=REQUEST + b" ", response_body=RESPONSE))
    assert (bad.verified, bad.reason) == (False, VerificationReason.REQUEST_HASH_MISMATCH)


def test_replayed_signature_of_another_exchange_fails(fake_provider):
    """An earlier, genuine signature served for this chat id names other hashes."""
    earlier = _signed(signed_text(b'{"prompt":"a"}', b'{"data":[1]}'))
    fake_provider.set_signature("now", 200, earlier)
    result = verify_response_signature(
        _service(fake_provider.url),
        "now",
        binding=ResponseBinding.of(request_body=REQUEST, response_body=RESPONSE),
    )
    assert (result.verified, result.reason) == (False, VerificationReason.RESPONSE_HASH_MISMATCH)
    assert "request hash differs too" in result.detail


def test_signer_mismatch_and_malformed_text(fake_provider):
    fake_provider.set_signature("other", 200, _signed(signed_text(REQUEST, RESPONSE), TEE_KEY))
    fake_provider.set_signature("free", 200, _signed("anything at all"))
    binding = ResponseBinding.of(request_body=REQUEST, response_body=RESPONSE)
    other = verify_response_signature(_service(fake_provider.url), "other", binding=binding)
    assert (other.verified, other.reason.value) == (False, "signer_mismatch")
    free = verify_response_signature(_service(fake_provider.url), "free", binding=binding)
    assert (free.verified, free.reason) == (False, VerificationReason.SIGNED_TEXT_MALFORMED)
    # without bytes the same text passes: exactly the SDK's weakness, reported as such
    sdk = verify_response_signature(_service(fake_provider.url), "free")
    assert (sdk.verified, sdk.binding) == (True, "signature_only")


def test_rate_limited_signature_endpoint_is_retried(fake_provider):
    """The gateway's own 429 on the signature endpoint is retried after ``Retry-After`` (default
    1 s when absent), within a bounded budget."""
    fake_provider.queue_signature("rl", 429, {"error": "Too many requests."}, times=1)
    fake_provider.set_signature("rl", 200, _signed(signed_text(REQUEST, RESPONSE)))
    started = time.monotonic()
    result = verify_response_signature(
        _service(fake_provider.url),
        "rl",
        binding=ResponseBinding.of(request_body=REQUEST, response_body=RESPONSE),
    )
    assert result.verified is True and 0.9 <= time.monotonic() - started < 3.0
    fake_provider.set_signature("busy", 429, {"error": "Too many requests."})
    started = time.monotonic()
    never = verify_response_signature(_service(fake_provider.url), "busy", rate_limit_budget=1.5)
    assert time.monotonic() - started < 3.5
    assert (never.verified, never.reason) == (False, VerificationReason.SIGNATURE_UNAVAILABLE)
    assert "429" in never.detail


async def test_async_binding(fake_provider):
    fake_provider.queue_signature("a", 429, {"error": "slow down"}, times=1)
    fake_provider.set_signature("a", 200, _signed(signed_text(REQUEST, RESPONSE)))
    async with httpx.AsyncClient() as client:
        ok = await averify_response_signature(
            _service(fake_provider.url),
            "a",
            client=client,
            rate_limit_budget=2,
            binding=ResponseBinding(hashlib.sha256(RESPONSE).hexdigest().upper(), None),
        )
        bad = await averify_response_signature(
            _service(fake_provider.url),
            "a",
            client=client,
            binding=ResponseBinding.of(response_body=b""),
        )
    assert (ok.verified, ok.binding) == (True, "response_only")
    assert bad.reason is VerificationReason.RESPONSE_HASH_MISMATCH
