"""Issuing session tokens on the user side (user-broker.md §6.1, §5.5): defaults, the 24 h
ephemeral rule, token ids."""

from __future__ import annotations

import re

import pytest
from eth_account import Account

from broker.inference.errors import InvalidTokenIdError, MalformedTokenError
from broker.inference.token_issuing import lowest_free_token_id, new_session_token
from broker.wire.session_token import sign_session_token, verify_session_token

USER0_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
PROVIDER_12 = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"


@pytest.fixture(scope="module")
def user0():
    return Account.from_key(USER0_KEY)


def test_new_token_defaults_are_24h_ephemeral_with_hex_nonce(user0):
    token = new_session_token(user0.address, PROVIDER_12, generation=3)
    assert token.token_id == 255 and token.is_ephemeral
    assert token.expires_at - token.timestamp == 86_400_000
    assert re.fullmatch(r"[0-9a-f]{32}", token.nonce)
    assert token.generation == 3
    other = new_session_token(user0.address, PROVIDER_12)
    assert other.nonce != token.nonce


def test_new_token_rules(user0):
    defaulted = new_session_token(user0.address, PROVIDER_12, duration_ms=-5)
    assert defaulted.expires_at - defaulted.timestamp == 86_400_000
    with pytest.raises(MalformedTokenError, match="cannot exceed 24 hours"):
        new_session_token(user0.address, PROVIDER_12, duration_ms=86_400_001)
    persistent = new_session_token(
        user0.address, PROVIDER_12, token_id=7, duration_ms=1000, timestamp_ms=5
    )
    assert persistent.expires_at == 1005
    for bad in (-1, 256, True, "3"):
        with pytest.raises(InvalidTokenIdError):
            new_session_token(user0.address, PROVIDER_12, token_id=bad)  # type: ignore[arg-type]


def test_lowest_free_token_id_skips_revoked_and_taken():
    assert lowest_free_token_id(0) == 0
    assert lowest_free_token_id(0b1011) == 2
    assert lowest_free_token_id(0b1011, {2, 4}) == 5
    with pytest.raises(InvalidTokenIdError, match="API Key limit reached"):
        lowest_free_token_id((1 << 255) - 1)


def test_issued_token_passes_the_provider_checks(user0):
    """What the user side issues, the shared provider check accepts (and binds to its fields)."""
    token = new_session_token(user0.address, PROVIDER_12, generation=2, token_id=4)
    parsed = verify_session_token(
        "Bearer " + sign_session_token(token, user0),
        provider_address=PROVIDER_12.lower(),
        account_generation=2,
    )
    assert parsed.token == token and parsed.token.expires_at == 0


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"nonce": "abc|def"}, "contains '|'"),
        ({"provider": PROVIDER_12 + "|"}, "contains '|'"),
        ({"nonce": "\ud800"}, "not valid Unicode"),
        ({"nonce": 5}, "nonce must be a string"),
    ],
)
def test_tokens_no_provider_could_read_are_not_signed(user0, fields, reason):
    """A ``|`` in a field made a key the provider splits inside its JSON (it splits at the first
    ``|``) and refuses; a lone surrogate crashed signing with a UnicodeEncodeError; a non-string
    nonce made a key the provider refuses. Each is refused, typed, before signing."""
    args = {"address": user0.address, "provider": PROVIDER_12} | fields
    nonce = args.pop("nonce", None)
    token = new_session_token(args["address"], args["provider"], nonce=nonce)
    with pytest.raises(MalformedTokenError, match=re.escape(reason)):
        sign_session_token(token, user0)
