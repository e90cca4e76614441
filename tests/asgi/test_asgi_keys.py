"""The one key check of the local servers (serve's API key on /v1, the dashboard and the Pixazo
paths; the gateway's admin key): a right key passes, anything else fails without an exception,
and the comparison is over fixed-length digests (a wrong key's length does not matter)."""

from __future__ import annotations

import pytest

from broker.asgi.keys import bearer_token, key_matches

KEY = "sk-0123456789abcdef"


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (f"Bearer {KEY}", KEY),
        (f"bearer   {KEY}  ", KEY),
        (f"  BEARER {KEY}", KEY),
        (f"Basic {KEY}", None),
        (KEY, None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_token(header, token):
    assert bearer_token(header) == token


@pytest.mark.parametrize(
    "given",
    [None, "", KEY[:-1], KEY + "x", KEY.upper(), "x" * 10_000, "sk-é\udcff", "\x00"],
)
def test_only_the_key_matches(given):
    assert key_matches(KEY, KEY)
    assert not key_matches(given, KEY)
