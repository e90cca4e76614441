"""The one rule both servers use to pass an upstream answer's headers on (aiohttp's headers are
a multi-mapping: a repeated name is several items)."""

from __future__ import annotations

from multidict import CIMultiDict

from broker.asgi.headers import copy_headers


def test_repeated_names_are_joined_dropped_ones_left_out_names_lower_cased():
    upstream = CIMultiDict(
        [
            ("Set-Cookie", "a=1"),
            ("X-RateLimit-Remaining", "9"),
            ("set-cookie", "b=2"),
            ("Content-Length", "12"),
            ("Connection", "keep-alive"),
        ]
    )
    assert copy_headers(upstream, {"content-length", "connection"}) == {
        "set-cookie": "a=1, b=2",
        "x-ratelimit-remaining": "9",
    }


def test_values_that_are_not_ascii_pass_on_byte_for_byte():
    """aiohttp decodes header bytes as UTF-8 with ``surrogateescape``; an ASGI server writes them
    as Latin-1. A lone ``0xB2`` (not UTF-8) or a UTF-8 ``€`` (beyond Latin-1) must come out as the
    bytes that came in, not fail to encode once the request is billed."""
    wire = b"caf\xc3\xa9 \xb2 \xe2\x82\xac"
    upstream = CIMultiDict([("X-Note", wire.decode("utf-8", "surrogateescape"))])
    copied = copy_headers(upstream, ())
    assert copied["x-note"].encode("latin-1") == wire
    assert copy_headers(CIMultiDict([("X-Plain", "ascii")]), ()) == {"x-plain": "ascii"}
