"""Errors of the wire rules both sides apply (``broker.wire``): session tokens and fees.

Tree::

    InferenceError
    └── TokenError                      an ``app-sk-`` session token was refused (B3)
        ├── MalformedTokenError         checks 1–4 and 6 (header, base64, pipe, JSON, ephemeral)
        ├── TokenProviderMismatchError  check 5: token issued for another provider
        ├── TokenExpiredError           check 7
        ├── TokenGenerationMismatchError check 8: generation below/above the account's
        ├── TokenRevokedError           check 8: revocation bit set for token ids 0–254
        └── TokenSignatureError         check 10: bad signature encoding or wrong signer
    InputError
    └── FeeInputError                   a fee cannot be computed from these inputs
        ├── UnknownServiceTypeError     (also InferenceError) no fee rule for the service type
        └── UsageError                  (also InferenceError) bad usage content, prices or ``n``

Every :class:`TokenError` carries ``message`` = the provider's text of provider-gateway.md B3
(without the ``validate session:`` prefix the gateway adds); messages never include the token.
:mod:`broker.inference.errors` re-exports these classes (the user side raised them first).
"""

from __future__ import annotations

from broker._exceptions import InferenceError, InputError

__all__ = [
    "FeeInputError",
    "MalformedTokenError",
    "TokenError",
    "TokenExpiredError",
    "TokenGenerationMismatchError",
    "TokenProviderMismatchError",
    "TokenRevokedError",
    "TokenSignatureError",
    "UnknownServiceTypeError",
    "UsageError",
]


class TokenError(InferenceError):
    """A session token (``app-sk-…``) failed one of the provider checks of provider-gateway.md B3.

    Attributes:
        message: the provider's error text (B3 table), e.g. ``"session token expired"``.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MalformedTokenError(TokenError):
    """B3 checks 1–4 and 6: missing ``Bearer app-sk-`` prefix, bad base64, no pipe, bad JSON, or
    an ephemeral token (id 255) without expiry or lasting more than 24 h."""


class TokenProviderMismatchError(TokenError):
    """B3 check 5: ``token.provider`` is not this provider's address."""


class TokenExpiredError(TokenError):
    """B3 check 7: ``expiresAt > 0`` and the current time (seconds) is past ``expiresAt / 1000``."""


class TokenGenerationMismatchError(TokenError):
    """B3 check 8: the token's generation differs from the account's on-chain generation (lower:
    revoked by ``revokeAllTokens``; higher: a future generation).

    Attributes:
        token_generation: the token's ``generation``. account_generation: the on-chain one.
    """

    def __init__(self, message: str, *, token_generation: int, account_generation: int) -> None:
        super().__init__(message)
        self.token_generation = token_generation
        self.account_generation = account_generation


class TokenRevokedError(TokenError):
    """B3 check 8: the bit ``1 << tokenId`` is set in the account's ``revokedBitmap``."""


class TokenSignatureError(TokenError):
    """B3 check 10: the signature is not 0x-hex, not 65 bytes, has v ∉ {27, 28}, or does not
    recover to ``token.address``."""


class FeeInputError(InputError):
    """A fee cannot be computed from these inputs (:mod:`broker.wire.fees`). Nothing was billed
    or recorded. Catch this class for every fee failure."""


class UnknownServiceTypeError(FeeInputError, InferenceError):
    """The service type has no fee rule (known: chatbot, text-to-image, image-editing,
    speech-to-text; user-broker.md 7.1 ``Unknown service type``)."""


class UsageError(FeeInputError, InferenceError):
    """Fee inputs of the wrong shape: content that is not bytes/str/mapping, a price that is not a
    non-negative int in neuron, or an image request whose ``n`` breaks :mod:`broker.wire.n`."""
