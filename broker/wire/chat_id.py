"""Where the chat ID of a response comes from (user-broker.md §8.1; provider-gateway.md B7).

The gateway sends its request id in the ``ZG-Res-Key`` header and signs the response under it and
under the backend's completion id (the top-level ``id`` of a JSON body, or of the first SSE chunk
that has one: :func:`broker.wire.sse.chat_id_from_sse`); the user side looks the signature up by
the same ids, in this order of preference:

1. the ``ZG-Res-Key`` response header (all endpoints, streaming or not);
2. non-streaming JSON bodies: the top-level ``id``;
3. SSE streams: the ``id`` of the first ``data:`` chunk that has one.

Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from broker.wire.json_body import loads_json_or_none

__all__ = ["CHAT_ID_HEADER", "chat_id_from_body", "chat_id_from_headers", "chat_id_of"]

CHAT_ID_HEADER = "ZG-Res-Key"
_CHAT_ID_HEADER_LOWER = CHAT_ID_HEADER.lower()


def chat_id_of(value: Any) -> str | None:
    """A usable chat id: ``value`` stripped when it is a non-blank string, else ``None``.

    Args:
        value: an ``id`` field or header value as received.
    """
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def chat_id_from_headers(
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None,
) -> str | None:
    """The ``ZG-Res-Key`` header (case-insensitive), or ``None`` when absent or empty.

    Args:
        headers: an ``httpx.Headers``, a dict, or ``(name, value)`` pairs (str or latin-1 bytes).
    """
    if headers is None:
        return None
    items = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in items:
        if isinstance(name, bytes):
            name = name.decode("latin-1")
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if name.lower() == _CHAT_ID_HEADER_LOWER:
            found = chat_id_of(value)
            if found:
                return found
    return None


def chat_id_from_body(body: bytes | str | Mapping[str, Any] | None) -> str | None:
    """The top-level ``id`` of a JSON response body (non-blank string), else ``None``.

    Args:
        body: the raw body (bytes/str) or the decoded JSON object. Invalid JSON gives ``None``.
    """
    if body is None:
        return None
    if isinstance(body, Mapping):
        return chat_id_of(body.get("id"))
    obj = loads_json_or_none(body)
    return chat_id_of(obj.get("id")) if isinstance(obj, dict) else None
