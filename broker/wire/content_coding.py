"""Removing a ``Content-Encoding`` for parsing (``provider-gateway.md`` B5: "decoded for parsing
only"; B7: the signature covers the bytes *as received*, not decompressed).

Used by the gateway (billing reads the decoded usage) and by ``serve`` (it hashes the raw bytes it
received, then decodes them for its client and for billing).
"""

from __future__ import annotations

import zlib

__all__ = ["DECODABLE_CODINGS", "decoded_body"]

#: Content codings that :func:`decoded_body` can remove.
DECODABLE_CODINGS = ("gzip", "x-gzip", "deflate", "identity")


def decoded_body(raw: bytes, content_encoding: str | None, *, limit: int = 64 << 20) -> bytes:
    """``raw`` with its ``Content-Encoding`` removed, for parsing only (B5).

    Args:
        raw: the body bytes as received.
        content_encoding: the ``Content-Encoding`` header (codings applied in order).
        limit: the most decoded bytes returned (a larger body is cut at ``limit``).

    Returns:
        The decoded bytes; ``raw`` itself when there is no coding, and also when a coding is
        unknown or the data is corrupt (the caller's parser then fails as for any unreadable body).
    """
    codings = [c.strip().lower() for c in (content_encoding or "").split(",") if c.strip()]
    data = raw
    for coding in reversed(codings):
        if coding == "identity":
            continue
        if coding in ("gzip", "x-gzip"):
            attempts = (16 + zlib.MAX_WBITS,)
        elif coding == "deflate":
            attempts = (zlib.MAX_WBITS, -zlib.MAX_WBITS)  # zlib-wrapped, else raw deflate
        else:
            return raw
        for wbits in attempts:
            try:
                data = zlib.decompressobj(wbits).decompress(data, limit)
                break
            except zlib.error:
                continue
        else:
            return raw
    return data
