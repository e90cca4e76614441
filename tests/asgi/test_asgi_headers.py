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
