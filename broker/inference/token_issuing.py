"""Issuing ``app-sk-`` session tokens on the user side (user-broker.md §6.1, §5.5).

What only the user side does: build a fresh token the way the SDK's ``generateSessionToken`` does
(time stamps, nonce, the 24 h ephemeral rule) and pick a free persistent token id. The wire format,
signing and the provider checks are :mod:`broker.wire.session_token`'s (shared with the gateway);
caching and storing issued tokens is :mod:`broker.inference.sessions`'s.
"""

from __future__ import annotations

import secrets
import time

from broker.inference.errors import InvalidTokenIdError
from broker.wire.errors import MalformedTokenError
from broker.wire.session_token import (
    EPHEMERAL_TOKEN_ID,
    MAX_EPHEMERAL_DURATION_MS,
    MAX_PERSISTENT_TOKEN_ID,
    MSG_EPHEMERAL_TOO_LONG,
    SessionToken,
    is_token_revoked,
)

__all__ = ["lowest_free_token_id", "new_nonce", "new_session_token", "now_ms"]


def now_ms() -> int:
    """The current Unix time in integer milliseconds (JavaScript ``Date.now()``)."""
    return time.time_ns() // 1_000_000


def new_nonce() -> str:
    """A fresh token nonce: 32 lowercase hex characters from :mod:`secrets` (the SDK's browser
    format, user-broker.md 6.1). The provider treats the nonce as opaque."""
    return secrets.token_hex(16)


def new_session_token(
    address: str,
    provider: str,
    *,
    generation: int = 0,
    token_id: int = EPHEMERAL_TOKEN_ID,
    duration_ms: int | None = None,
    timestamp_ms: int | None = None,
    nonce: str | None = None,
) -> SessionToken:
    """Build a session token the way the SDK's ``generateSessionToken`` does (user-broker.md 6.1).

    Args:
        address: the user's checksummed address.
        provider: the provider's address (kept as given).
        generation: the account's current generation (``getAccount().generation``; 0 if none).
        token_id: 255 (ephemeral, default) or 0–254 (persistent API key).
        duration_ms: lifetime in milliseconds. Ephemeral: default and maximum 24 h; a non-positive
            value means 24 h. Persistent: ``None``/0/negative = never expires (``expiresAt`` 0).
        timestamp_ms: creation time in Unix ms (default: now).
        nonce: the nonce (default: :func:`new_nonce`).

    Returns:
        The unsigned :class:`~broker.wire.session_token.SessionToken` (sign it with
        :func:`broker.wire.session_token.sign_session_token`).

    Raises:
        InvalidTokenIdError: ``token_id`` is not an int in 0–255.
        MalformedTokenError: an ephemeral duration above 24 h, or a negative generation.
    """
    if isinstance(token_id, bool) or not isinstance(token_id, int) or not 0 <= token_id <= 255:
        raise InvalidTokenIdError(f"Invalid tokenId: {token_id}. Must be between 0 and 254")
    if isinstance(generation, bool) or not isinstance(generation, int) or generation < 0:
        raise MalformedTokenError(f"generation must be a non-negative int, got {generation!r}")
    ts = now_ms() if timestamp_ms is None else int(timestamp_ms)
    if token_id == EPHEMERAL_TOKEN_ID:
        duration = MAX_EPHEMERAL_DURATION_MS if not duration_ms or duration_ms <= 0 else duration_ms
        if duration > MAX_EPHEMERAL_DURATION_MS:
            raise MalformedTokenError(MSG_EPHEMERAL_TOO_LONG)
        expires_at = ts + int(duration)
    else:
        expires_at = ts + int(duration_ms) if duration_ms and duration_ms > 0 else 0
    return SessionToken(
        address=address,
        provider=provider,
        timestamp=ts,
        expires_at=expires_at,
        nonce=new_nonce() if nonce is None else nonce,
        generation=generation,
        token_id=token_id,
    )


def lowest_free_token_id(
    revoked_bitmap: int, taken: set[int] | frozenset[int] = frozenset()
) -> int:
    """The lowest id in 0–254 that is neither revoked in ``revoked_bitmap`` nor in ``taken``.

    The SDK skips only revoked ids (so repeated keys reuse id 0, user-broker.md §13 item 10); pass
    the ids already issued locally as ``taken`` to avoid that.

    Raises:
        InvalidTokenIdError: every id is revoked or taken
            (``API Key limit reached (255). Call revokeAllTokens() to reset.``).
    """
    for token_id in range(MAX_PERSISTENT_TOKEN_ID + 1):
        if token_id not in taken and not is_token_revoked(revoked_bitmap, token_id):
            return token_id
    raise InvalidTokenIdError("API Key limit reached (255). Call revokeAllTokens() to reset.")
