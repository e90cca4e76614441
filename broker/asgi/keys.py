"""One check of a client-sent key against the configured one, for every key a local server
checks: ``serve``'s API key (``/v1``, the dashboard's JSON endpoints, the Pixazo subscription key)
and the gateway's admin key (its ops page and ``/metrics``).

:func:`key_matches` compares SHA-256 digests with :func:`hmac.compare_digest`, so that neither the
key's content nor its length shows in the timing (``compare_digest`` on the raw values returns at
once when the lengths differ, which tells a caller how long the key is).
"""

from __future__ import annotations

import hashlib
import hmac

__all__ = ["bearer_token", "key_matches"]


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value (the scheme in any case,
    blanks around the token removed), or ``None`` for no header or another scheme."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def key_matches(given: str | None, expected: str) -> bool:
    """Whether ``given`` (client-sent; ``None``: none sent) equals ``expected``, in constant time
    over their SHA-256 digests. Any text is accepted (a header value that is not UTF-8 is
    compared by its bytes)."""
    if given is None:
        return False
    offered = hashlib.sha256(given.encode("utf-8", "surrogateescape")).digest()
    wanted = hashlib.sha256(expected.encode("utf-8", "surrogateescape")).digest()
    return hmac.compare_digest(offered, wanted)
