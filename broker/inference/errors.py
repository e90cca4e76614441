"""Errors of the inference broker (``broker.inference``).

Tree (all derive from :class:`broker._exceptions.InferenceError`)::

    InferenceError
    ├── TokenError                      an ``app-sk-`` session token was refused (B3)
    │   └── MalformedTokenError, TokenProviderMismatchError, TokenExpiredError,
    │       TokenGenerationMismatchError, TokenRevokedError, TokenSignatureError
    ├── InvalidTokenIdError (also InputError)  token id outside 0–254, already revoked, none left
    ├── InvalidChatIdError (also InputError)   a chat id that cannot name a signature URL
    ├── UnknownServiceTypeError         (also FeeInputError) no fee rule for the service type
    ├── UsageError                      (also FeeInputError) fee inputs of the wrong shape
    ├── UnknownProviderError            no service registered for a provider
    ├── AccountNotFoundError            no sub-account for (user, provider)
    ├── SignerNotAcknowledgedError      the provider's TEE signer is not acknowledged
    ├── ProviderModelsError             ``GET {url}/v1/models`` failed or had the wrong shape
    └── RevokeAcknowledgementError      revoking an acknowledgement with a non-zero balance

The token and fee errors are rules both sides apply: they are defined in :mod:`broker.wire.errors`
(the gateway raises them too) and re-exported here, where the user side has always found them.
"""

from __future__ import annotations

from broker._exceptions import InferenceError, InputError
from broker.wire.errors import (
    FeeInputError,
    MalformedTokenError,
    TokenError,
    TokenExpiredError,
    TokenGenerationMismatchError,
    TokenProviderMismatchError,
    TokenRevokedError,
    TokenSignatureError,
    UnknownServiceTypeError,
    UsageError,
)

__all__ = [
    "AccountNotFoundError",
    "FeeInputError",
    "InvalidChatIdError",
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


class InvalidTokenIdError(InferenceError, InputError):
    """A persistent token id is outside 0–254, already revoked, or all 255 ids are revoked
    (user-broker.md 6.1). Nothing was signed or sent."""


class InvalidChatIdError(InferenceError, InputError):
    """A chat id that cannot name the B7 signature URL (provider-gateway.md B7): a dot segment
    (``.`` or ``..``, which HTTP clients resolve away, sending the fetch to another route) or longer
    than :data:`broker.inference.response_signature.CHAT_ID_MAX_CHARS`. Nothing was fetched."""


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
