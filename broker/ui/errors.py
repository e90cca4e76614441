"""Errors of the web pages. Each maps to an HTTP status (``status_code``) and is answered as
``{"error": "<words>"}`` by the ui's JSON endpoints."""

from __future__ import annotations

from broker._exceptions import BrokerError, ConfigError, InputError

__all__ = [
    "ActionNotFoundError",
    "AdminKeyMissingError",
    "BodyTooLargeError",
    "CsrfError",
    "UIAuthError",
    "UIChainError",
    "UIError",
    "UIInputError",
    "UIStartError",
]


class UIError(BrokerError):
    """Root of the ui errors; ``status_code`` is the HTTP status it is answered with."""

    status_code = 500


class UIInputError(UIError, InputError):
    """Bad input to a ui endpoint (400)."""

    status_code = 400


class UIAuthError(UIError):
    """Missing or wrong key (401)."""

    status_code = 401


class CsrfError(UIError):
    """A state-changing request that is not provably from our own page: wrong ``Origin`` or
    ``Host``, not JSON, or a missing/wrong CSRF token (403)."""

    status_code = 403


class ActionNotFoundError(UIError):
    """No pending action with that id (never prepared, already done, or expired) (404)."""

    status_code = 404


class BodyTooLargeError(UIInputError):
    """A request body larger than the endpoint takes (413)."""

    status_code = 413


class AdminKeyMissingError(UIError, ConfigError):
    """The gateway has no admin key, so its ops page and ``/metrics`` are off (403)."""

    status_code = 403


class UIStartError(UIError, ConfigError):
    """The standalone dashboard could not start (port in use, address not available)."""


class UIChainError(UIError):
    """The chain or the provider failed or refused (502); the reason in words."""

    status_code = 502
