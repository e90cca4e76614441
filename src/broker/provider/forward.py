"""Forwarding to the backend (``provider-gateway.md`` B5): routing, request rewriting, header
filtering, and a pooled :class:`httpx.AsyncClient`."""

from __future__ import annotations

import json

import httpx

__all__ = [
    "BILLABLE_ROUTES",
    "FREE_PREFIXES",
    "Forwarder",
    "forward_headers",
    "normalise_route",
    "response_headers",
    "rewrite_request",
]

BILLABLE_ROUTES = ("/chat/completions", "/images/generations", "/images/edits",
                   "/audio/transcriptions")
FREE_PREFIXES = ("/attestation",)
_STRIPPED = {"address", "fee", "input-fee", "nonce", "request-hash", "signature", "session-token",
             "session-signature", "authorization", "host", "content-length", "connection",
             "transfer-encoding", "accept-encoding"}
_HOP = {"content-length", "transfer-encoding", "connection", "keep-alive"}


def normalise_route(path: str) -> str:
    """The path after ``/v1/proxy`` with a leading extra ``/v1`` collapsed and no trailing ``/``."""
    route = "/" + path.lstrip("/")
    if route == "/v1" or route.startswith("/v1/"):
        route = route[3:] or "/"
    return route.rstrip("/") or "/"


def rewrite_request(service_type: str, route: str, body: bytes, content_type: str) -> bytes:
    """B5 rewrites: chat streams get ``stream_options.include_usage = true``."""
    if service_type != "chatbot" or route != "/chat/completions" or \
            "json" not in content_type.lower():
        return body
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return body
    if isinstance(data, dict) and data.get("stream") is True:
        opts = data.get("stream_options")
        if not isinstance(opts, dict) or "include_usage" not in opts:
            data["stream_options"] = {**(opts if isinstance(opts, dict) else {}),
                                      "include_usage": True}
            return json.dumps(data, separators=(",", ":")).encode()
    return body


def forward_headers(headers, extra: dict[str, str]) -> dict[str, str]:
    """Client headers minus the credential/legacy ones (B5), plus ``additionalSecret`` entries."""
    out = {k: v for k, v in headers.items() if k.lower() not in _STRIPPED}
    out.update(extra)
    return out


def response_headers(headers: httpx.Headers) -> dict[str, str]:
    """Backend headers to copy to the client (hop-by-hop and ``Content-Length`` dropped)."""
    return {k: v for k, v in headers.items() if k.lower() not in _HOP}


class Forwarder:
    """A pooled HTTP client to the backends.

    Args:
        timeout: total seconds for one backend call (default 15 min, B5).
    """

    def __init__(self, timeout: float = 900.0) -> None:
        self.client = httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=10.0),
                                        limits=httpx.Limits(max_connections=200))

    async def send(self, method: str, url: str, headers: dict[str, str], body: bytes,
                   params: dict[str, str] | None = None) -> httpx.Response:
        """Send and return the response with its body **unread** (stream it, then close it)."""
        req = self.client.build_request(method, url, headers=headers, content=body, params=params)
        return await self.client.send(req, stream=True)

    async def aclose(self) -> None:
        """Close the pool."""
        await self.client.aclose()
