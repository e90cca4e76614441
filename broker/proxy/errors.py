"""Errors of the local proxy (``0g-broker serve``).

Tree (all derive from :class:`broker._exceptions.BrokerError`)::

    ProxyError (InferenceError)
    ├── ProxyConfigError (also ConfigError)  bad serve settings (no provider, bad verify mode)
    ├── ProxyStartupError                    start-up steps failed (service, acknowledgement, funds)
    └── ProxyHTTPError                       an error answered to the client in OpenAI's shape
        ├── UpstreamError                    the provider answered with an error status (kept)
        ├── UpstreamUnavailableError         the provider could not be reached (502)
        │   └── UpstreamResponseTooLargeError  its answer is larger than serve reads (502)
        ├── UpstreamTimeoutError             the provider did not answer in time (504)
        └── VerificationRefusedError         ``enforce``: the response signature failed (502)

Messages never include session tokens or API keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from broker._exceptions import ConfigError, InferenceError

__all__ = [
    "ProxyConfigError",
    "ProxyError",
    "ProxyHTTPError",
    "ProxyStartupError",
    "UpstreamError",
    "UpstreamResponseTooLargeError",
    "UpstreamTimeoutError",
    "UpstreamUnavailableError",
    "VerificationRefusedError",
    "http_exception_error",
    "validation_error",
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
        headers: other response headers (e.g. ``Allow`` on a 405).
    """

    status_code = 500
    type = "api_error"

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        type: str | None = None,
        code: str | None = None,
        retry_after: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.headers = dict(headers or {})
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


class UpstreamResponseTooLargeError(UpstreamUnavailableError):
    """The provider's answer is larger than ``max_response_bytes``
    (``ZG_SERVE_MAX_RESPONSE_BYTES``): 502, code ``upstream_response_too_large``; serve stops
    reading it (a provider cannot make serve hold an answer of any size in memory)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"the provider's answer is larger than {limit} bytes (ZG_SERVE_MAX_RESPONSE_BYTES)",
            code="upstream_response_too_large",
        )


class UpstreamTimeoutError(ProxyHTTPError):
    """The provider did not answer within the route's timeout: 504."""

    status_code = 504
    type = "upstream_timeout"


class VerificationRefusedError(ProxyHTTPError):
    """Verify mode ``enforce``: the response's TEE signature did not verify: 502."""

    status_code = 502
    type = "verification_error"


def _clip(text: str, limit: int = 200) -> str:
    text = text if len(text) <= limit else text[:limit] + "..."
    return text.encode("utf-8", "replace").decode("utf-8")


def http_exception_error(
    method: str,
    path: str,
    status_code: int,
    detail: Any = None,
    headers: Mapping[str, str] | None = None,
) -> ProxyHTTPError:
    """The OpenAI-shaped error for the framework's own HTTP errors: an unknown path (404
    ``invalid_request_error`` / ``unknown_url``, OpenAI's ``Invalid URL (METHOD /path)``), a method
    the path does not allow (405 ``method_not_allowed``, ``Allow`` kept), anything else with its
    status and detail.

    Args:
        method, path: the request's. status_code: the framework's status. detail: its detail.
        headers: its headers (``Allow``).

    Returns:
        A :class:`ProxyHTTPError` (not raised).
    """
    kept = {k: v for k, v in (headers or {}).items() if k.lower() == "allow"}
    if status_code == 404:
        return ProxyHTTPError(
            f"Invalid URL ({method} {_clip(path)})",
            status_code=404,
            type="invalid_request_error",
            code="unknown_url",
        )
    if status_code == 405:
        return ProxyHTTPError(
            f"Method {method} is not allowed on {_clip(path)}",
            status_code=405,
            type="invalid_request_error",
            code="method_not_allowed",
            headers=kept,
        )
    message = detail if isinstance(detail, str) and detail else f"HTTP {status_code}"
    etype = "invalid_request_error" if status_code < 500 else "api_error"
    return ProxyHTTPError(_clip(message, 2000), status_code=status_code, type=etype, headers=kept)


def validation_error(errors: Sequence[Mapping[str, Any]]) -> ProxyHTTPError:
    """The OpenAI-shaped 400 for a request the framework's validation refused (bad path or query
    parameter): the first problem's message, ``param`` its location.

    Returns:
        A :class:`ProxyHTTPError` (not raised): 400 ``invalid_request_error`` /
        ``invalid_parameter``.
    """
    first = errors[0] if errors else {}
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path", "header")]
    param = ".".join(loc) or None
    message = str(first.get("msg") or "invalid request")
    if param:
        message = f"{param}: {message}"
    return ProxyHTTPError(
        _clip(message, 500),
        status_code=400,
        type="invalid_request_error",
        code="invalid_parameter",
        param=param,
    )
