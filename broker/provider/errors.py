"""Errors of the provider gateway (``broker.provider``).

Each HTTP-facing error carries the status code and the exact ``{"error": ...}`` text of
``provider-gateway.md`` B2–B7, so the app only renders them.
"""

from __future__ import annotations

from broker._exceptions import ConfigError, ProviderError

__all__ = [
    "BodyTooLargeError",
    "ForbiddenError",
    "GatewayHTTPError",
    "OverloadedError",
    "ProviderConfigError",
    "RateLimitedError",
    "RequestValidationError",
    "SessionValidationError",
    "SettlementError",
    "SignatureNotFoundError",
    "UnsupportedEndpointError",
]


class ProviderConfigError(ProviderError, ConfigError):
    """The gateway settings are missing or inconsistent (no provider key, bad prices...)."""


class GatewayHTTPError(ProviderError):
    """A request refused by the gateway.

    Attributes:
        status_code: HTTP status to answer with.
        message: the text placed in ``{"error": message}``.
        retry_after: seconds for a ``Retry-After`` header, or ``None``.
    """

    status_code: int = 400

    def __init__(
        self, message: str, *, status_code: int | None = None, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code
        self.retry_after = retry_after


class SessionValidationError(GatewayHTTPError):
    """The ``Authorization`` token failed a B3 check (400 ``validate session: <msg>``)."""

    def __init__(self, message: str) -> None:
        super().__init__(f"validate session: {message}", status_code=400)


class RequestValidationError(GatewayHTTPError):
    """The account failed a B4 check (400 ``validate request: <msg>``)."""

    def __init__(self, message: str) -> None:
        super().__init__(f"validate request: {message}", status_code=400)


class RateLimitedError(GatewayHTTPError):
    """A per-IP or per-user limit of B6 was hit (429 with ``Retry-After``)."""

    status_code = 429


class OverloadedError(GatewayHTTPError):
    """The global in-flight cap of B6 was hit (503 with ``Retry-After``)."""

    status_code = 503


class BodyTooLargeError(GatewayHTTPError):
    """The request body exceeds the configured cap (413)."""

    status_code = 413


class ForbiddenError(GatewayHTTPError):
    """The caller may not see this resource (403)."""

    status_code = 403


class UnsupportedEndpointError(GatewayHTTPError):
    """The ``/v1/proxy`` path is not served (400
    ``unsupported endpoint: endpoint not supported``)."""

    def __init__(self) -> None:
        super().__init__("unsupported endpoint: endpoint not supported", status_code=400)


class SignatureNotFoundError(GatewayHTTPError):
    """No stored response signature for this chat id (400, B7 text)."""

    def __init__(self) -> None:
        super().__init__(
            "prepare HTTP request: Chat id not found or expired, chat_id_not_found", status_code=400
        )


class SettlementError(ProviderError):
    """A settlement pass could not complete (RPC failure, reverted transaction)."""
