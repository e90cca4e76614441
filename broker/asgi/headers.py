"""Copying an upstream response's headers to the client, one rule for ``serve`` (the provider's
answer) and the gateway (the backend's answer).

Header values are bytes on the wire. aiohttp (both servers' upstream client) hands them over
decoded as UTF-8 with ``surrogateescape``, and Starlette writes a response's headers as Latin-1:
a value that is not ASCII (a lone ``0xB2`` byte, a UTF-8 ``€``) would fail to encode *after* the
request was billed. :func:`copy_headers` therefore gives such a value back as the Latin-1 text of
its original bytes, which Starlette writes unchanged.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

__all__ = ["copy_headers", "wire_text"]


def wire_text(value: str) -> str:
    """``value`` (decoded by aiohttp as UTF-8 with ``surrogateescape``) as the Latin-1 text of its
    bytes on the wire, which an ASGI server writes back unchanged; ASCII is returned as it is."""
    if value.isascii():
        return value
    return value.encode("utf-8", "surrogateescape").decode("latin-1")


def copy_headers(headers: Mapping[str, str], drop: Collection[str]) -> dict[str, str]:
    """The headers to pass on: names lower-cased, those in ``drop`` (lower-case names: hop-by-hop
    headers, ``Content-Length``, ...) left out, a repeated name's values joined with ``", "``
    (RFC 9110 §5.3).

    Args:
        headers: the upstream's headers (a multi-mapping: repeated names are separate items).
        drop: lower-case names not to copy.

    Returns:
        A new dict, lower-case names; values (and names) that are not ASCII as the Latin-1 text of
        their bytes (:func:`wire_text`), so that they are passed on byte for byte.
    """
    out: dict[str, str] = {}
    for key, value in headers.items():
        name = key.lower()
        if name in drop:
            continue
        name, value = wire_text(name), wire_text(value)
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out
