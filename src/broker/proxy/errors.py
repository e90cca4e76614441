"""Errors of the local proxy (``0g-broker serve``).

Tree (all derive from :class:`broker._exceptions.BrokerError`)::

    ProxyError (InferenceError)
    ├── ProxyConfigError (also ConfigError)   bad serve settings (no provider, bad verify mode)
    ├── ProxyStartupError                     the start-up steps failed (service, acknowledgement, funds)
    └── ProxyHTTPError                        an error answered to the client in OpenAI's shape
        ├── UpstreamError                     the provider answered with an error status (kept)
        ├── UpstreamUnavailableError          the provider could not be reached (502)
        ├── UpstreamTimeoutError              the provider did not answer in time (504)
        └── VerificationRefusedError          ``enforce``: the response signature did not verify (502)

Messages never include session tokens or API keys.
"""

from __future__ import annotations

from broker._exceptions import ConfigError, InferenceError

__all__ = [
    "ProxyConfigError",
    "ProxyError",
    "ProxyHTTPError",
    "ProxyStartupError",
    "UpstreamError",
    "UpstreamTimeoutError",
    "UpstreamUnavailableError",
    "VerificationRefusedError",
]


class ProxyError(InferenceError):
    """Base class of the proxy's errors."""


class ProxyConfigError(ProxyError, ConfigError):
    """The serve settings are incomplete or invalid."""


class ProxyStartupError(ProxyError):
    """A start-up step (service lookup, acknowledgement, funding) failed."""


class ProxyHTTPError(ProxyError):
    """An error the proxy answers with ``{"error": {"message", "type", "code", "param"}}``.

    Attributes:
        status_code: HTTP status to answer with.
        message: human-readable text (no secrets).
        type: OpenAI error type (``invalid_request_error``, ``insufficient_quota``,
            ``rate_limit_error``, ``upstream_error``, ``authentication_error``...).
        code: short machine code or ``None``.
        retry_after: seconds for a ``Retry-After`` header, or ``None``.
    """

    status_code = 500
    type = "api_error"

    def __init__(self, message: str, *, status_code: int | None = None, type: str | None = None,
                 code: str | None = None, retry_after: str | None = None,
                 param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if status_code is not None:
            self.status_code = status_code
        if type is not None:
            self.type = type
        self.code = code
        self.param = param
        self.retry_after = retry_after


class UpstreamError(ProxyHTTPError):
    """The provider answered with an error status; the status is kept."""

    type = "upstream_error"


class UpstreamUnavailableError(ProxyHTTPError):
    """The provider could not be reached (connection refused, reset, protocol error): 502."""

    status_code = 502
    type = "upstream_error"


class UpstreamTimeoutError(ProxyHTTPError):
    """The provider did not answer within the route's timeout: 504."""

    status_code = 504
    type = "upstream_timeout"


class VerificationRefusedError(ProxyHTTPError):
    """Verify mode ``enforce``: the response's TEE signature did not verify: 502."""

    status_code = 502
    type = "verification_error"
