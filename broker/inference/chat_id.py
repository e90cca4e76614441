"""The chat ID of a response as the user side looks it up (user-broker.md §8.1).

:func:`extract_chat_id` applies the order of preference of :mod:`broker.wire.chat_id` (the header,
then the body's or the stream's ``id``), whose rules it composes; the single rules live in
:mod:`broker.wire.chat_id` and :mod:`broker.wire.sse`, shared with the gateway.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from broker.wire.chat_id import chat_id_from_body, chat_id_from_headers
from broker.wire.sse import chat_id_from_sse

__all__ = ["extract_chat_id"]


def extract_chat_id(
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    body: bytes | str | Mapping[str, Any] | None = None,
    *,
    stream: bool = False,
) -> str | None:
    """The chat ID by the §8.1 rules: ``ZG-Res-Key`` header first, else the body's ``id``.

    Args:
        headers: response headers (any mapping or pairs).
        body: the response body (raw bytes/str or decoded JSON); for ``stream=True`` the full SSE
            text.
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
