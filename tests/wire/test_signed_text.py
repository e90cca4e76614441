"""The B7 signed text ``sha256(request):sha256(response)`` (``test-vectors.md`` C2)."""

from __future__ import annotations

import hashlib

import pytest

from broker.provider.signing import response_signature_text
from broker.wire.signed_text import (
    SignedTextError,
    compare_signed_text,
    parse_signed_text,
    signed_text,
)

REQ, RESP = b'{"model":"m"}', b'{"id":"x"}'


def test_format_and_gateway_agree():
    text = signed_text(REQ, RESP)
    assert text == hashlib.sha256(REQ).hexdigest() + ":" + hashlib.sha256(RESP).hexdigest()
    assert response_signature_text(REQ, RESP) == text  # the gateway signs this text
    parsed = parse_signed_text(text)
    assert (parsed.request_hash, parsed.response_hash) == tuple(text.split(":"))


def test_compare():
    text = signed_text(REQ, RESP)
    rq, rs = hashlib.sha256(REQ).hexdigest(), hashlib.sha256(RESP).hexdigest()
    assert (
        compare_signed_text(text, response_hash=rs, request_hash=rq.upper()).request_matches is True
    )
    other = compare_signed_text(text, response_hash=rq)
    assert (other.request_matches, other.response_matches) == (None, False)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "abc",
        "a" * 64,
        "A" * 64 + ":" + "a" * 64,
        "a" * 64 + ":" + "a" * 64 + ":x",
        "g" * 64 + ":" + "a" * 64,
    ],
)
def test_malformed_texts(bad):
    with pytest.raises(SignedTextError):
        parse_signed_text(bad)
