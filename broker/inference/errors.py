"""Errors of the inference broker (``broker.inference``).

Tree (all derive from :class:`broker._exceptions.InferenceError`)::

    InferenceError
    ├── TokenError                      a session token was refused (provider-gateway.md B3)
    │   ├── MalformedTokenError         checks 1–4, 6: header, base64, pipe, JSON, ephemeral
    │   ├── TokenProviderMismatchError  check 5: token issued for another provider
    │   ├── TokenExpiredError           check 7
    │   ├── TokenGenerationMismatchError check 8: generation below/above the account's
    │   ├── TokenRevokedError           check 8: revocation bit set for token ids 0–254
    │   └── TokenSignatureError         check 10: bad signature encoding or wrong signer
    ├── InvalidTokenIdError (also InputError)  id outside 0–254, revoked, none left
    ├── UnknownServiceTypeError         no fee extractor (user-broker.md 7.1)
    ├── UsageError (also InputError)    a usage count that cannot be billed
    ├── UnknownProviderError            no service registered for a provider
    ├── AccountNotFoundError            no sub-account for (user, provider)
    ├── SignerNotAcknowledgedError      the provider's TEE signer is not acknowledged
    ├── ProviderModelsError             ``GET {url}/v1/models`` failed or had the wrong shape
    └── RevokeAcknowledgementError      revoking an acknowledgement with a non-zero balance

Every :class:`TokenError` carries ``message`` = the provider's text of B3 (without the
``validate session:`` prefix the gateway adds); messages never include the token itself.
"""

from __future__ import annotations

from broker._exceptions import InferenceError, InputError

__all__ = [
    "AccountNotFoundError",
    "InvalidTokenIdError",
    "MalformedTokenError",
    "ProviderModelsError",
    "RevokeAcknowledgementError",
    "SignerNotAcknowledgedError",
    "TokenError",
    "TokenExpiredError",
    "TokenGenerationMismatchError",
    "TokenProviderMismatchError",
    "TokenRevokedError",
    "TokenSignatureError",
    "UnknownProviderError",
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
    """B3 checks 1–4 and 6: missing ``Bearer app-sk-`` prefix, bad base64, no pipe, bad JSON, or an
    ephemeral token (id 255) without expiry or lasting more than 24 h."""


class TokenProviderMismatchError(TokenError):
    """B3 check 5: ``token.provider`` is not this provider's address."""


class TokenExpiredError(TokenError):
    """B3 check 7: ``expiresAt > 0`` and the current time (seconds) is past ``expiresAt / 1000``."""


class TokenGenerationMismatchError(TokenError):
    """B3 check 8: the token's generation differs from the account's on-chain generation (lower:
    revoked by ``revokeAllTokens``; higher: a future generation)."""

    def __init__(self, message: str, *, token_generation: int, account_generation: int) -> None:
        super().__init__(message)
        self.token_generation = token_generation
        self.account_generation = account_generation


class TokenRevokedError(TokenError):
    """B3 check 8: the bit ``1 << tokenId`` is set in the account's ``revokedBitmap``."""


class TokenSignatureError(TokenError):
    """B3 check 10: the signature is not 0x-hex, not 65 bytes, has v ∉ {27, 28}, or does not
    recover to ``token.address``."""


class InvalidTokenIdError(InferenceError, InputError):
    """A persistent token id is outside 0–254, already revoked, or all 255 ids are revoked
    (user-broker.md 6.1). Nothing was signed or sent."""


class UnknownServiceTypeError(InferenceError, InputError):
    """The service type has no fee extractor (known: chatbot, text-to-image, image-editing,
    speech-to-text)."""


class UsageError(InferenceError, InputError):
    """A usage count is a non-integral number and cannot be billed in neuron."""


class UnknownProviderError(InferenceError):
    """No service is registered on chain for this provider (``ServiceNotExist``)."""


class AccountNotFoundError(InferenceError):
    """No sub-account exists for (user, provider) (``AccountNotExists``)."""


class SignerNotAcknowledgedError(InferenceError):
    """The user has not acknowledged the provider's TEE signer (``acknowledgeProviderSigner``)."""


class ProviderModelsError(InferenceError):
    """``GET {url}/v1/models`` failed or did not return ``{"object": "list", "data": [...]}``."""


class RevokeAcknowledgementError(InferenceError):
    """``acknowledgeTEESigner(provider, false)`` refused client-side: the sub-account balance is
    not zero (user-broker.md 5.3)."""
