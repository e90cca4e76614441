"""Session token format (broker.wire.session_token): golden vectors (test-vectors.md §1, §2, C1),
round trips, and each provider-side rejection of provider-gateway.md B3."""

from __future__ import annotations

import base64
import json

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import keccak
from signature_helpers import malleate

from broker.inference.token_issuing import new_session_token
from broker.wire.errors import (
    MalformedTokenError,
    TokenError,
    TokenExpiredError,
    TokenGenerationMismatchError,
    TokenProviderMismatchError,
    TokenRevokedError,
    TokenSignatureError,
)
from broker.wire.session_token import (
    MAX_CLOCK_SKEW_S,
    SessionToken,
    authorization_header,
    parse_authorization,
    sign_session_token,
    verify_session_token,
)

USER0_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
USER1_KEY = "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d"
PROVIDER_12 = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
PROVIDER_C1 = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"

V1_RAW = (
    '{"address":"0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266","provider":'
    '"0x70997970C51812dc3A010C7d01b50e0d17dc79C8","timestamp":1700000000000,"expiresAt":'
    '1700086400000,"nonce":"1700000000000-k3j5h2g9f8d7s0000","generation":0,"tokenId":255}'
)
V1_SIG = (
    "0xbee668707e6521d0671d68a56d0ebf0a0d35280e4e12a789b599979d5d5023766e8e3f21c8662316fb6143b"
    "b0e717b02226bbfe81e93c059f4cc3dc927ca1fd81b"
)
V1_HEADER = (
    "Bearer app-sk-eyJhZGRyZXNzIjoiMHhmMzlGZDZlNTFhYWQ4OEY2RjRjZTZhQjg4MjcyNzljZmZGYjkyMjY2Iiwi"
    "cHJvdmlkZXIiOiIweDcwOTk3OTcwQzUxODEyZGMzQTAxMEM3ZDAxYjUwZTBkMTdkYzc5QzgiLCJ0aW1lc3RhbXAiOj"
    "E3MDAwMDAwMDAwMDAsImV4cGlyZXNBdCI6MTcwMDA4NjQwMDAwMCwibm9uY2UiOiIxNzAwMDAwMDAwMDAwLWszajVo"
    "Mmc5ZjhkN3MwMDAwIiwiZ2VuZXJhdGlvbiI6MCwidG9rZW5JZCI6MjU1fXwweGJlZTY2ODcwN2U2NTIxZDA2NzFkNj"
    "hhNTZkMGViZjBhMGQzNTI4MGU0ZTEyYTc4OWI1OTk5NzlkNWQ1MDIzNzY2ZThlM2YyMWM4NjYyMzE2ZmI2MTQzYmIw"
    "ZTcxN2IwMjIyNmJiZmU4MWU5M2MwNTlmNGNjM2RjOTI3Y2ExZmQ4MWI="
)
C1_HEADER = (
    "Bearer app-sk-eyJhZGRyZXNzIjoiMHg3MDk5Nzk3MEM1MTgxMmRjM0EwMTBDN2QwMWI1MGUwZDE3ZGM3OUM4Iiwi"
    "cHJvdmlkZXIiOiIweDNDNDRDZERkQjZhOTAwZmEyYjU4NWRkMjk5ZTAzZDEyRkE0MjkzQkMiLCJ0aW1lc3RhbXAiOj"
    "E3NjcyMjU2MDAwMDAsImV4cGlyZXNBdCI6MTc2NzMxMjAwMDAwMCwibm9uY2UiOiIxNzY3MjI1NjAwMDAwLWFiY2Rl"
    "ZjEyMzQ1NjAwMDAwMCIsImdlbmVyYXRpb24iOjAsInRva2VuSWQiOjI1NX18MHg1Yzg2M2ViOTE2ODYzN2YzMTgzZm"
    "FiOWQxZjU5OTUzZDA1ODAzNjdjMGNmYjZjMjZlYmNlYzQwMjczZTkxNWJiMTc3OWNmZjk4ZmMzNTg4MGQ4NzBmOWJk"
    "NjQxM2NiYzVkMmM2OTZmNDE4MWRhZGJkOGU3Mzc4ZjVmNzI3MWMyODFj"
)


@pytest.fixture(scope="module")
def user0():
    return Account.from_key(USER0_KEY)


@pytest.fixture(scope="module")
def user1():
    return Account.from_key(USER1_KEY)


def _v1_token(user0, **overrides) -> SessionToken:
    kwargs = {"timestamp_ms": 1_700_000_000_000, "nonce": "1700000000000-k3j5h2g9f8d7s0000"}
    kwargs.update(overrides)
    return new_session_token(user0.address, PROVIDER_12, **kwargs)


def _c1_token(user1, **overrides) -> SessionToken:
    kwargs = {"timestamp_ms": 1_767_225_600_000, "nonce": "1767225600000-abcdef123456000000"}
    kwargs.update(overrides)
    return new_session_token(user1.address, PROVIDER_C1, **kwargs)


def _forge(raw: str, signature: str) -> str:
    return "Bearer app-sk-" + base64.b64encode(f"{raw}|{signature}".encode()).decode()


# -- golden vectors ------------------------------------------------------------------------------


def test_vector_1_ephemeral_token_bytes_hash_signature_header(user0):
    token = _v1_token(user0)
    assert token.to_json() == V1_RAW
    assert len(token.to_json().encode()) == 235
    assert token.message_hash().hex() == (
        "9c52d4a5aaf9947d37df9a53f3131026f8e0e7fdbd034606b2730df294519f82"
    )
    header = authorization_header(sign_session_token(token, user0))
    assert header == V1_HEADER
    parsed = parse_authorization(header)
    assert parsed.signature == V1_SIG
    assert parsed.raw_message == V1_RAW.encode()


def test_vector_2_persistent_token(user0):
    token = _v1_token(user0, token_id=0, duration_ms=None)
    assert token.expires_at == 0
    assert token.to_json() == V1_RAW.replace('"expiresAt":1700086400000', '"expiresAt":0').replace(
        '"tokenId":255', '"tokenId":0'
    )
    assert token.message_hash().hex() == (
        "ad00459e251a0016a1b99552d45b3cd12d811ed5e5c3bcf940490256ab2b1bc2"
    )
    key = sign_session_token(token, user0)
    assert key.startswith("app-sk-") and not key.startswith("Bearer")
    parsed = parse_authorization(key)
    assert parsed.signature == (
        "0xefb045a2d50fb0ae04ac843a691bca516599960042a23301c4da796351c46fa2746df509af31fbf4d81cf5"
        "bff9e6fae23c8302df61bb6aa5fba7c77f12919aac1c"
    )
    assert parsed.token == token


def test_vector_c1_header_and_provider_acceptance(user1):
    token = _c1_token(user1)
    assert token.message_hash().hex() == (
        "7cf659109191db2e95bed69886cf0e385805a76172adb578ff5f8e70f7459ddb"
    )
    header = authorization_header(sign_session_token(token, user1))
    assert header == C1_HEADER
    parsed = verify_session_token(
        C1_HEADER, provider_address=PROVIDER_C1.lower(), account_generation=0, now_s=1_767_225_600
    )
    assert parsed.token.address == user1.address


# -- round trips ---------------------------------------------------------------------------------


def test_round_trip_with_unicode_nonce(user0):
    token = _v1_token(user0, nonce="nonce-é-✓")
    key = sign_session_token(token, user0)
    parsed = verify_session_token(
        key,
        provider_address=PROVIDER_12,
        account_generation=0,
        now_s=1_700_000_000,
        require_bearer=False,
    )
    assert parsed.token == token
    assert "é" in parsed.raw_message.decode()


# -- provider-side rejections (B3, in order) ------------------------------------------------------


@pytest.mark.parametrize(
    "header, message",
    [
        (None, "missing or invalid Authorization header"),
        ("Bearer sk-abc", "missing or invalid Authorization header"),
        ("app-sk-" + base64.b64encode(b"{}|0x").decode(), "missing or invalid Authorization"),
        ("Bearer app-sk-!!notbase64", "invalid base64 in Authorization header"),
        (
            "Bearer app-sk-" + base64.b64encode(b"no pipe here").decode(),
            "invalid Authorization payload",
        ),
        (
            "Bearer app-sk-" + base64.b64encode(b"not json|0x00").decode(),
            "invalid session token format",
        ),
        (
            "Bearer app-sk-" + base64.b64encode(b'{"tokenId":256}|0x00').decode(),
            "invalid session token format",
        ),
        (
            "Bearer app-sk-" + base64.b64encode(b'{"timestamp":"1"}|0x00').decode(),
            "invalid session token format",
        ),
    ],
)
def test_malformed_headers(header, message):
    with pytest.raises(MalformedTokenError, match=message) as info:
        verify_session_token(header, provider_address=PROVIDER_C1)  # type: ignore[arg-type]
    assert isinstance(info.value, TokenError)
    assert "app-sk-" not in str(info.value).replace("Bearer app-sk-<base64", "")


def test_wrong_provider(user1):
    with pytest.raises(
        TokenProviderMismatchError, match="^session token is for different provider$"
    ):
        verify_session_token(C1_HEADER, provider_address=PROVIDER_12, now_s=1_767_225_600)


def test_ephemeral_rules_on_received_token(user1):
    too_long = _c1_token(user1).to_dict() | {"expiresAt": 1_767_225_600_000 + 86_400_001}
    raw = json.dumps(too_long, separators=(",", ":"))
    signed = user1.sign_message(encode_defunct(primitive=keccak(raw.encode())))
    header = _forge(raw, "0x" + bytes(signed.signature).hex())
    with pytest.raises(MalformedTokenError, match="cannot exceed 24 hours"):
        verify_session_token(header, provider_address=PROVIDER_C1, now_s=1_767_225_600)
    no_expiry = json.dumps(_c1_token(user1).to_dict() | {"expiresAt": 0}, separators=(",", ":"))
    with pytest.raises(MalformedTokenError, match="must have an expiration time"):
        verify_session_token(_forge(no_expiry, "0x00"), provider_address=PROVIDER_C1)


def _signed_header(user, raw_fields: dict) -> str:
    raw = json.dumps(raw_fields, separators=(",", ":"))
    signed = user.sign_message(encode_defunct(primitive=keccak(raw.encode())))
    return _forge(raw, "0x" + bytes(signed.signature).hex())


def test_ephemeral_token_cannot_outlive_24h_from_now(user1):
    """B3 bounds an ephemeral token by ``expiresAt - timestamp``, both chosen by the signer: a
    timestamp years ahead, or a negative expiresAt (check 7 runs only for expiresAt > 0), made an
    ephemeral token (never revocable by id) valid for years. Now it must end within 24 h (plus
    clock skew) of the gateway's clock, and have a positive expiry."""
    now_s = 1_767_225_600
    base = _c1_token(user1).to_dict()
    ahead_ms = (now_s + 10 * 365 * 86_400) * 1000
    far_future = _signed_header(user1, base | {"timestamp": ahead_ms, "expiresAt": ahead_ms + 1})
    with pytest.raises(MalformedTokenError, match="cannot exceed 24 hours"):
        verify_session_token(far_future, provider_address=PROVIDER_C1, now_s=now_s)
    negative = _signed_header(user1, base | {"timestamp": -86_400_000, "expiresAt": -1})
    with pytest.raises(MalformedTokenError, match="must have an expiration time"):
        verify_session_token(negative, provider_address=PROVIDER_C1, now_s=now_s)
    # a client clock ahead by less than the allowed skew still works
    ahead = (now_s + MAX_CLOCK_SKEW_S) * 1000
    skewed = _signed_header(user1, base | {"timestamp": ahead, "expiresAt": ahead + 86_400_000})
    assert verify_session_token(skewed, provider_address=PROVIDER_C1, now_s=now_s).token
    # persistent keys keep "0 = never" (revocable one by one on chain)
    forever = sign_session_token(_c1_token(user1, token_id=4, timestamp_ms=ahead_ms), user1)
    assert verify_session_token(authorization_header(forever), provider_address=PROVIDER_C1)


def test_malleated_token_signature_is_refused(user1):
    """The token's ``(r, n - s)`` twin recovers to the same user: refused (non-canonical), so one
    signed token has exactly one accepted header."""
    raw = _c1_token(user1).to_json()
    signed = user1.sign_message(encode_defunct(primitive=keccak(raw.encode())))
    genuine = _forge(raw, "0x" + bytes(signed.signature).hex())
    assert verify_session_token(genuine, provider_address=PROVIDER_C1, now_s=1_767_225_600)
    twin = _forge(raw, malleate(bytes(signed.signature)))
    with pytest.raises(TokenSignatureError, match="non-canonical signature"):
        verify_session_token(twin, provider_address=PROVIDER_C1, now_s=1_767_225_600)


def test_expired():
    # expiresAt = 1767312000000 → valid through second 1767312000, expired after it
    verify_session_token(C1_HEADER, provider_address=PROVIDER_C1, now_s=1_767_312_000)
    with pytest.raises(TokenExpiredError, match="^session token expired$"):
        verify_session_token(C1_HEADER, provider_address=PROVIDER_C1, now_s=1_767_312_001)


def test_generation_mismatch_both_ways(user1):
    with pytest.raises(TokenGenerationMismatchError, match=r"revoked \(generation expired\)") as e:
        verify_session_token(
            C1_HEADER, provider_address=PROVIDER_C1, account_generation=1, now_s=1_767_225_600
        )
    assert (e.value.token_generation, e.value.account_generation) == (0, 1)
    future = authorization_header(sign_session_token(_c1_token(user1, generation=2), user1))
    with pytest.raises(TokenGenerationMismatchError, match=r"future generation"):
        verify_session_token(
            future, provider_address=PROVIDER_C1, account_generation=1, now_s=1_767_225_600
        )
    # account missing (None) → the generation check passes
    verify_session_token(
        future, provider_address=PROVIDER_C1, account_generation=None, now_s=1_767_225_600
    )


def test_revoked_bit_applies_to_persistent_ids_only(user1):
    key = authorization_header(sign_session_token(_c1_token(user1, token_id=3), user1))
    verify_session_token(
        key,
        provider_address=PROVIDER_C1,
        account_generation=0,
        revoked_bitmap=0b0111,
        now_s=1_767_225_600,
    )
    with pytest.raises(TokenRevokedError, match="^session token has been revoked$"):
        verify_session_token(
            key,
            provider_address=PROVIDER_C1,
            account_generation=0,
            revoked_bitmap=0b1000,
            now_s=1_767_225_600,
        )
    # the ephemeral C1 token ignores the bitmap
    verify_session_token(
        C1_HEADER,
        provider_address=PROVIDER_C1,
        account_generation=0,
        revoked_bitmap=(1 << 255) - 1,
        now_s=1_767_225_600,
    )


@pytest.mark.parametrize(
    "field, value",
    [("nonce", "replayed-nonce"), ("address", None), ("tokenId", 7)],
)
def test_a_tampered_field_under_the_original_signature_is_refused(user0, user1, field, value):
    """Change one field of a signed token and keep its signature: a fresh nonce (to dodge a
    replay check), another user's address (to spend their balance), a persistent token id. The
    signature no longer recovers to the token's address."""
    fields = _c1_token(user1).to_dict()
    fields[field] = user0.address if value is None else value
    raw = json.dumps(fields, separators=(",", ":"))
    sig = parse_authorization(C1_HEADER).signature
    with pytest.raises(TokenSignatureError, match="address mismatch"):
        verify_session_token(_forge(raw, sig), provider_address=PROVIDER_C1, now_s=1_767_225_600)


def test_bad_signatures(user0, user1):
    raw = _c1_token(user1).to_json()
    sig = parse_authorization(C1_HEADER).signature
    flipped = sig[:10] + ("0" if sig[10] != "0" else "1") + sig[11:]
    with pytest.raises(TokenSignatureError, match="address mismatch|invalid signature"):
        verify_session_token(
            _forge(raw, flipped), provider_address=PROVIDER_C1, now_s=1_767_225_600
        )
    # signed by someone else
    other = parse_authorization(sign_session_token(_c1_token(user1), user0)).signature
    with pytest.raises(
        TokenSignatureError, match="^signature verification failed: address mismatch$"
    ):
        verify_session_token(_forge(raw, other), provider_address=PROVIDER_C1, now_s=1_767_225_600)
    with pytest.raises(TokenSignatureError, match="invalid signature format"):
        verify_session_token(
            _forge(raw, sig[2:]), provider_address=PROVIDER_C1, now_s=1_767_225_600
        )
    with pytest.raises(TokenSignatureError, match="invalid signature length"):
        verify_session_token(
            _forge(raw, sig[:-2]), provider_address=PROVIDER_C1, now_s=1_767_225_600
        )
    spaced_sig = sig[:4] + " " + sig[4:-2] + "\n" + sig[-2:]  # bytes.fromhex skips whitespace
    with pytest.raises(TokenSignatureError, match="invalid signature format: invalid hex"):
        verify_session_token(
            _forge(raw, spaced_sig), provider_address=PROVIDER_C1, now_s=1_767_225_600
        )
    v_zero = sig[:-2] + "00"
    with pytest.raises(TokenSignatureError):
        verify_session_token(_forge(raw, v_zero), provider_address=PROVIDER_C1, now_s=1_767_225_600)
    # re-serialising would change the hash: a token with extra whitespace signed over other bytes
    spaced = raw.replace(",", ", ")
    with pytest.raises(TokenSignatureError):
        verify_session_token(_forge(spaced, sig), provider_address=PROVIDER_C1, now_s=1_767_225_600)


def test_require_bearer_refuses_bare_key(user1):
    key = sign_session_token(_c1_token(user1), user1)
    with pytest.raises(MalformedTokenError):
        verify_session_token(key, provider_address=PROVIDER_C1, now_s=1_767_225_600)


def test_legacy_five_field_token_parses_with_zero_defaults():
    raw = '{"address":"0xabc","provider":"0xdef","timestamp":1,"expiresAt":2,"nonce":"n"}'
    parsed = parse_authorization(_forge(raw, "0x00"))
    assert parsed.token.token_id == 0 and parsed.token.generation == 0
