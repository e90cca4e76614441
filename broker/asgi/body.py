"""One capped request-body reader for the servers (``serve`` and the gateway).

The reader only consumes the ASGI request it is given (its ``Content-Length`` header and its body
stream); it refuses a body larger than the cap with :class:`RequestBodyTooLargeError`, which each
server renders in its own error shape (413 ``{"error": ...}`` on the gateway, the OpenAI shape on
``serve``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Protocol

from broker.asgi.errors import RequestBodyTooLargeError

__all__ = ["StreamedRequest", "read_capped_body"]


class StreamedRequest(Protocol):
    """What :func:`read_capped_body` needs of a request (a Starlette ``Request`` has it)."""

    @property
    def headers(self) -> Mapping[str, str]:
        """The request headers (lower-case names)."""
        ...

    def stream(self) -> AsyncIterator[bytes]:
        """The body, chunk by chunk."""
        ...


async def read_capped_body(request: StreamedRequest, cap: int) -> bytes:
    """The whole request body, refusing more than ``cap`` bytes.

    A ``Content-Length`` above the cap is refused before any byte is read; a body streamed
    without (or with a false) ``Content-Length`` is refused as soon as it passes the cap.

    Args:
        request: the request (``headers`` and ``stream()``).
        cap: the largest body accepted, in bytes.

    Returns:
        The body bytes (``b""`` for none).

    Raises:
        RequestBodyTooLargeError: the body is larger than ``cap`` (``.cap`` carries it).
    """
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > cap:
        raise RequestBodyTooLargeError(cap)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > cap:
            raise RequestBodyTooLargeError(cap)
        chunks.append(chunk)
    return b"".join(chunks)
