"""``ZG-Res-Signature``: a response verified from the signature header over the text rebuilt from
the caller's own hashes, with no fetch; every header that does not prove this exchange (forged,
from another response, signed by another key, malformed, stripped) gives ``None`` so the caller
falls back to the signature endpoint."""

from __future__ import annotations

import pytest
from devnet_helpers import C2_SIG, C2_TEXT, MOCK_TEE_ADDR, MOCK_TEE_KEY
from eth_account import Account
from eth_account.messages import encode_defunct

from broker.inference.response_signature import (
    BINDING_FULL,
    ResponseBinding,
    VerificationReason,
    recover_text_signer,
    verify_signature_header,
)
from broker.wire.signed_text import signed_text

REQUEST = b'{"messages":[{"content":"hi","role":"user"}],"model":"m"}'
RESPONSE = b'{"id":"chatcmpl-1","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}'
OTHER_KEY = "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a"


def _sign(text: str, key: str) -> str:
    return "0x" + bytes(Account.sign_message(encode_defunct(text=text), key).signature).hex()


def _binding(request: bytes = REQUEST, response: bytes = RESPONSE) -> ResponseBinding:
    return ResponseBinding.of(request_body=request, response_body=response)


def test_genuine_header_verifies_full_without_fetch():
    header = _sign(signed_text(REQUEST, RESPONSE), MOCK_TEE_KEY)
    result = verify_signature_header(MOCK_TEE_ADDR, "key-1", header, _binding())
    assert result is not None
    assert (result.verified, result.reason, result.binding) == (
        True,
        VerificationReason.VERIFIED,
        BINDING_FULL,
    )
    assert result.recovered == MOCK_TEE_ADDR and result.chat_id == "key-1"
    assert result.signed_text == signed_text(REQUEST, RESPONSE)
    # the signer comparison ignores the address's case
    assert verify_signature_header(MOCK_TEE_ADDR.lower(), "key-1", header, _binding()) is not None


@pytest.mark.parametrize("chat_id", ["..", "id\nforged log line", "c" * 10_000])
def test_header_under_a_refused_chat_id_is_not_used(chat_id):
    """A genuine header does not carry a chat id the fetch path refuses (dot segment, control
    characters, endless) into the result and the verification log."""
    header = _sign(signed_text(REQUEST, RESPONSE), MOCK_TEE_KEY)
    assert verify_signature_header(MOCK_TEE_ADDR, chat_id, header, _binding()) is None


def test_header_over_other_bytes_is_not_used():
    """A header from another response (or a body changed after signing) does not recover to the
    signer over this exchange's hashes."""
    other = _sign(signed_text(REQUEST, RESPONSE + b" "), MOCK_TEE_KEY)
    assert verify_signature_header(MOCK_TEE_ADDR, "k", other, _binding()) is None
    other_request = _sign(signed_text(REQUEST + b" ", RESPONSE), MOCK_TEE_KEY)
    assert verify_signature_header(MOCK_TEE_ADDR, "k", other_request, _binding()) is None
    # the C2 vector is a genuine signature of another exchange
    assert verify_signature_header(MOCK_TEE_ADDR, "k", C2_SIG, _binding()) is None


def test_header_signed_by_another_key_is_not_used():
    forged = _sign(signed_text(REQUEST, RESPONSE), OTHER_KEY)
    assert verify_signature_header(MOCK_TEE_ADDR, "k", forged, _binding()) is None


@pytest.mark.parametrize(
    "header",
    [None, "", "0x", "0x1234", "zz" * 65, "0x" + "00" * 65, "0x" + "ab" * 64 + "05", "not hex"],
)
def test_stripped_or_malformed_header_is_not_used(header):
    assert verify_signature_header(MOCK_TEE_ADDR, "k", header, _binding()) is None


def test_header_needs_both_hashes():
    """Without the request hash the text cannot be rebuilt: the fetch decides (response_only)."""
    header = _sign(signed_text(REQUEST, RESPONSE), MOCK_TEE_KEY)
    response_only = ResponseBinding.of(response_body=RESPONSE)
    assert verify_signature_header(MOCK_TEE_ADDR, "k", header, response_only) is None
    assert verify_signature_header(MOCK_TEE_ADDR, "k", header, None) is None


def test_recover_matches_the_c2_vector_and_v_forms():
    assert recover_text_signer(C2_TEXT, C2_SIG) == MOCK_TEE_ADDR
    raw = bytes.fromhex(C2_SIG[2:])
    low_v = "0x" + (raw[:64] + bytes([raw[64] - 27])).hex()  # v as 0/1 is accepted too
    assert recover_text_signer(C2_TEXT, low_v) == MOCK_TEE_ADDR
    with pytest.raises(ValueError):
        recover_text_signer(C2_TEXT, "0x" + (raw[:64] + b"\x05").hex())
