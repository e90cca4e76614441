"""Errors of the Pixazo-compatible endpoint, answered as ``{"error": "<reason>", "message": "..."}``
(seed ``004``: ``{"error": "Insufficient Balance", "message": "..."}`` with 402, ``{"error": "Model
not found", ...}`` with 400)."""

from __future__ import annotations

from broker.asgi.guard import GuardRefusal
from broker.proxy.errors import ProxyError

__all__ = ["REASONS", "PixazoHTTPError", "pixazo_error_response", "pixazo_guard_body"]

#: Pixazo's ``error`` text by HTTP status.
REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    402: "Insufficient Balance",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


class PixazoHTTPError(ProxyError):
    """An error answered in Pixazo's shape.

    Attributes:
        status_code: HTTP status. error: the short reason (``REASONS`` by default).
        message: the human-readable text (no secrets). retry_after: ``Retry-After`` seconds or
        ``None``.
    """

    def __init__(
        self,
        status_code: int,
        message: str,
        *,
        error: str | None = None,
        retry_after: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.error = error or REASONS.get(status_code, "Error")
        self.message = message
        self.retry_after = retry_after


def pixazo_error_response(
    status_code: int,
    message: str,
    *,
    error: str | None = None,
    retry_after: str | None = None,
    headers: dict[str, str] | None = None,
):
    """The JSON response ``{"error": <reason>, "message": <message>}`` with ``status_code``
    (``Retry-After`` when given)."""
    from fastapi.responses import JSONResponse

    out = dict(headers or {})
    if retry_after:
        out["Retry-After"] = str(retry_after)
    body = {"error": error or REASONS.get(status_code, "Error"), "message": message}
    return JSONResponse(body, status_code=status_code, headers=out or None)


def pixazo_guard_body(refusal: GuardRefusal) -> dict:
    """A refusal of serve's web guard (foreign ``Host`` or ``Origin``, cross-site, wrong
    ``Content-Type``) in Pixazo's shape, for the Pixazo paths:
    ``{"error": "Forbidden", "message": ...}`` (403) or ``"Unsupported Media Type"`` (415)."""
    return {"error": REASONS.get(refusal.status, "Error"), "message": refusal.message}
