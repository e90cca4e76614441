"""The text a provider signs for one response (``provider-gateway.md`` B7; ``test-vectors.md`` C2).

``hex(sha256(request as forwarded)) + ":" + hex(sha256(raw response bytes))``: lowercase hex, 64
characters each, one colon. The user side recomputes both hashes from the bytes it sent and received
and compares them with the text the signature covers (:func:`compare_signed_text`); the gateway
builds the text with :func:`signed_text`.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from broker._exceptions import InputError

__all__ = [
    "SignedText",
    "SignedTextError",
    "TextComparison",
    "compare_signed_text",
    "parse_signed_text",
    "sha256_hex",
    "signed_text",
]

_HEX64 = re.compile(r"[0-9a-f]{64}")


class SignedTextError(InputError):
    """A signed text that is not ``<64 lowercase hex>:<64 lowercase hex>`` (B7)."""


def sha256_hex(data: bytes) -> str:
    """Lowercase hex SHA-256 of ``data`` (64 characters)."""
    return hashlib.sha256(data).hexdigest()


def signed_text(request_body: bytes, response_body: bytes) -> str:
    """The B7 text for one exchange.

    Args:
        request_body: the body as forwarded to the backend (after the B5 rewrites; see
            :mod:`broker.wire.forwarded_request`).
        response_body: the backend's body as received (for streams the whole raw SSE stream; never
            decompressed).

    Returns:
        ``"<sha256(request)>:<sha256(response)>"`` in lowercase hex.
    """
    return sha256_hex(request_body) + ":" + sha256_hex(response_body)


@dataclass(frozen=True, slots=True)
class SignedText:
    """The two hashes of a parsed signed text (lowercase hex)."""

    request_hash: str
    response_hash: str


def parse_signed_text(text: str) -> SignedText:
    """Split a B7 text into its two hashes.

    Raises:
        SignedTextError: not two 64-character lowercase hex strings joined by one colon.
    """
    parts = text.split(":") if isinstance(text, str) else []
    if len(parts) != 2 or not all(_HEX64.fullmatch(p) for p in parts):
        raise SignedTextError("the signed text is not '<sha256 hex>:<sha256 hex>' (B7)")
    return SignedText(parts[0], parts[1])


@dataclass(frozen=True, slots=True)
class TextComparison:
    """Which halves of a signed text match the local hashes (``None``: not compared)."""

    request_matches: bool | None
    response_matches: bool


def compare_signed_text(
    text: str, *, response_hash: str, request_hash: str | None = None
) -> TextComparison:
    """Compare a signed text with the hashes computed locally.

    Args:
        text: the signed text (B7).
        response_hash: hex SHA-256 of the raw response bytes as received (always compared).
        request_hash: hex SHA-256 of the request as forwarded, or ``None`` when the caller cannot
            reproduce it (then ``request_matches`` is ``None``).

    Returns:
        A :class:`TextComparison`.

    Raises:
        SignedTextError: ``text`` is not a B7 text.
    """
    parsed = parse_signed_text(text)
    return TextComparison(
        None if request_hash is None else parsed.request_hash == request_hash.lower(),
        parsed.response_hash == response_hash.lower(),
    )
