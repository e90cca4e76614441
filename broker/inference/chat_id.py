"""Where the chat ID of a response comes from (user-broker.md §8.1).

Order of preference, as the SDK documents for its callers:

1. the ``ZG-Res-Key`` response header (all endpoints, streaming or not);
2. non-streaming JSON bodies: the top-level ``id``;
3. SSE streams: the ``id`` of the first ``data:`` chunk that has one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from broker.inference.sse import SSEDecoder, parse_sse_json

__all__ = [
    "CHAT_ID_HEADER",
    "SSEChatIdExtractor",
    "chat_id_from_body",
    "chat_id_from_headers",
    "chat_id_from_sse",
    "extract_chat_id",
]

CHAT_ID_HEADER = "ZG-Res-Key"


def _valid_id(value: Any) -> str | None:
    if isinstance(value, str) and value.strip():
        return value.strip()
    return None


def chat_id_from_headers(
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None,
) -> str | None:
    """The ``ZG-Res-Key`` header (case-insensitive), or ``None`` when absent or empty.

    Args:
        headers: an ``httpx.Headers``, a dict, or ``(name, value)`` pairs.
    """
    if headers is None:
        return None
    items = headers.items() if isinstance(headers, Mapping) else headers
    for name, value in items:
        if isinstance(name, bytes):
            name = name.decode("latin-1")
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if name.lower() == CHAT_ID_HEADER.lower():
            found = _valid_id(value)
            if found:
                return found
    return None


def chat_id_from_body(body: bytes | str | Mapping[str, Any] | None) -> str | None:
    """The top-level ``id`` of a JSON response body (non-empty string), else ``None``.

    Args:
        body: the raw body (bytes/str) or the decoded JSON object. Invalid JSON gives ``None``.
    """
    if body is None:
        return None
    if isinstance(body, Mapping):
        return _valid_id(body.get("id"))
    try:
        obj = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return _valid_id(obj.get("id")) if isinstance(obj, dict) else None


class SSEChatIdExtractor:
    """Incremental chat-ID finder for an SSE stream: feed chunks as they arrive.

    ``chat_id`` becomes the ``id`` of the first ``data:`` event (JSON object) that has one and then
    never changes. Chunks may be split at arbitrary byte boundaries.
    """

    def __init__(self) -> None:
        self._decoder = SSEDecoder()
        self.chat_id: str | None = None

    def feed(self, chunk: bytes | str) -> str | None:
        """Consume a chunk; return the chat ID found so far (or ``None``)."""
        self._handle(self._decoder.feed(chunk))
        return self.chat_id

    def close(self) -> str | None:
        """End of stream: flush an unterminated last event; return the chat ID (or ``None``)."""
        self._handle(self._decoder.close())
        return self.chat_id

    def observe(self, obj: dict[str, Any]) -> str | None:
        """Consume one event already decoded as a JSON object (for a caller that parses each
        event once for several purposes); return the chat ID found so far."""
        if self.chat_id is None:
            self.chat_id = _valid_id(obj.get("id"))
        return self.chat_id

    def _handle(self, events: list[str]) -> None:
        for data in events:
            if self.chat_id is not None:
                return
            obj = parse_sse_json(data)
            if obj is not None:
                self.observe(obj)


def chat_id_from_sse(stream: bytes | str | Iterable[bytes | str]) -> str | None:
    """The ``id`` of the first SSE ``data:`` chunk that has one, from a whole stream or chunks."""
    extractor = SSEChatIdExtractor()
    chunks = [stream] if isinstance(stream, bytes | str) else stream
    for chunk in chunks:
        if extractor.feed(chunk):
            return extractor.chat_id
    return extractor.close()


def extract_chat_id(
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    body: bytes | str | Mapping[str, Any] | None = None,
    *,
    stream: bool = False,
) -> str | None:
    """The chat ID by the §8.1 rules: ``ZG-Res-Key`` header first, else the body's ``id``.

    Args:
        headers: response headers (any mapping or pairs).
        body: the response body (raw bytes/str or decoded JSON); for ``stream=True`` the full SSE text.
        stream: the body is an SSE stream (first ``data:`` chunk with an ``id``).

    Returns:
        The chat ID, or ``None`` when neither source has one.
    """
    found = chat_id_from_headers(headers)
    if found:
        return found
    if body is None:
        return None
    if stream and not isinstance(body, Mapping):
        return chat_id_from_sse(body)
    return chat_id_from_body(body)
