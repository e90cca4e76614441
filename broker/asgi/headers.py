"""Copying an upstream response's headers to the client, one rule for ``serve`` (the provider's
answer) and the gateway (the backend's answer)."""

from __future__ import annotations

from collections.abc import Collection, Mapping

__all__ = ["copy_headers"]


def copy_headers(headers: Mapping[str, str], drop: Collection[str]) -> dict[str, str]:
    """The headers to pass on: names lower-cased, those in ``drop`` (lower-case names: hop-by-hop
    headers, ``Content-Length``, ...) left out, a repeated name's values joined with ``", "``
    (RFC 9110 §5.3).

    Args:
        headers: the upstream's headers (a multi-mapping: repeated names are separate items).
        drop: lower-case names not to copy.

    Returns:
        A new dict, lower-case names.
    """
    out: dict[str, str] = {}
    for key, value in headers.items():
        name = key.lower()
        if name in drop:
            continue
        out[name] = f"{out[name]}, {value}" if name in out else value
    return out
