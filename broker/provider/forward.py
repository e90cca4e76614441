"""Forwarding to the backend (``provider-gateway.md`` B5): routing, request rewriting, header
filtering, response decoding for billing, and a pooled :mod:`aiohttp` client.

Compression. The client's ``Accept-Encoding`` is forwarded, restricted to the codings this module
can decode for billing (``gzip``, ``deflate``, ``identity``); without one the backend is asked for
``identity``. The client receives the backend's bytes unchanged (with their ``Content-Encoding``);
the gateway decodes a copy only to read the usage (B5: "decoded for parsing only"). The Go broker
forwards every coding because it can decode ``br`` too; we cannot without an extra dependency, and
a body we cannot read would be billed wrongly.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping

import aiohttp

from broker.asgi.headers import copy_headers
from broker.wire.content_coding import DECODABLE_CODINGS, decoded_body
from broker.wire.forwarded_request import forwarded_json_body, is_json_content_type

__all__ = [
    "BACKEND_KEEPALIVE",
    "BILLABLE_ROUTES",
    "DECODABLE_CODINGS",
    "FREE_PREFIXES",
    "JSON_ROUTES",
    "USAGE_BILLED_ROUTES",
    "BackendResponse",
    "Forwarder",
    "decoded_body",
    "forward_accept_encoding",
    "forward_headers",
    "is_plain_route",
    "normalise_route",
    "response_headers",
    "rewrite_request",
    "serves_billable_route",
]

BILLABLE_ROUTES = (
    "/chat/completions",
    "/images/generations",
    "/images/edits",
    "/audio/transcriptions",
)
#: Billable routes whose requests are JSON objects (the others take ``multipart/form-data``).
JSON_ROUTES = ("/chat/completions", "/images/generations")
FREE_PREFIXES = ("/attestation",)
#: The billable routes of the service types whose fee is read from the answer's usage: their own
#: route only (B5: billing follows the type; the chatbot rule finds no chat usage in an image or
#: transcription answer, and the speech rule none in a chat answer, so a backend that also served
#: those, one server for several APIs, would have answered them for a fee of 0). The image types
#: bill ``n × outputPrice`` per request on any billable route (the devnet stack forwards chat on a
#: text-to-image gateway).
USAGE_BILLED_ROUTES = {
    "chatbot": ("/chat/completions",),
    "speech-to-text": ("/audio/transcriptions",),
}
#: Seconds an idle backend connection is kept for reuse: below the idle timeout of the servers
#: models run behind (uvicorn's default, vLLM's included, is 5 s), so that a request is never sent
#: on a connection the backend is closing at that moment (a billed POST cannot be retried).
BACKEND_KEEPALIVE = 3.0
_STRIPPED = {
    "address",
    "fee",
    "input-fee",
    "nonce",
    "request-hash",
    "signature",
    "session-token",
    "session-signature",
    "authorization",
    "host",
    "content-length",
    "connection",
    "transfer-encoding",
    "accept-encoding",
    # the browser's context is the gateway's business (B2 CORS), not the backend's: a
    # local backend behind broker.asgi.guard.LocalGuard refuses foreign origins
    "origin",
    "referer",
    "sec-fetch-site",
    "sec-fetch-mode",
    "sec-fetch-dest",
    "sec-fetch-user",
    # hop-by-hop (RFC 9110 7.6.1): this connection's business, not the backend's
    "keep-alive",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-connection",
    "expect",  # the gateway has read the whole body
    # what a proxy says about the client: a client's own claim is not the gateway's word
    "forwarded",
    "x-forwarded-for",
    "x-forwarded-host",
    "x-forwarded-proto",
    "x-forwarded-port",
    "x-forwarded-prefix",
    "x-real-ip",
}
_HOP = {"content-length", "transfer-encoding", "connection", "keep-alive"}


def normalise_route(path: str) -> str:
    """The path after ``/v1/proxy`` with a leading extra ``/v1`` collapsed and no trailing ``/``."""
    route = "/" + path.lstrip("/")
    if route == "/v1" or route.startswith("/v1/"):
        route = route[3:] or "/"
    return route.rstrip("/") or "/"


#: A route segment that names a resource: unreserved URL characters, not ``.`` or ``..``.
_PLAIN_SEGMENT = re.compile(r"(?!\.\.?\Z)[A-Za-z0-9._~-]+\Z")


def is_plain_route(route: str) -> bool:
    """Whether a normalised route (:func:`normalise_route`, after the server decoded its
    percent-escapes) is ``/`` or non-empty segments of unreserved URL characters, none of them
    ``.`` or ``..``.

    A route is appended to the backend's URL, and the backend client resolves dot segments (also
    ``%2e%2e``, the second decoding of ``%252e%252e``): ``/attestation/../chat/completions``,
    free under its prefix, would reach the billable ``/chat/completions`` unauthenticated and
    unbilled. Such routes are refused instead (B2: unsupported endpoint).
    """
    return route == "/" or all(_PLAIN_SEGMENT.match(part) for part in route[1:].split("/"))


def serves_billable_route(service_type: str, route: str) -> bool:
    """Whether a gateway of ``service_type`` serves the billable ``route`` (one of
    :data:`BILLABLE_ROUTES`): its own route for the types of :data:`USAGE_BILLED_ROUTES`, any for
    the others."""
    own = USAGE_BILLED_ROUTES.get(service_type)
    return own is None or route in own


def rewrite_request(service_type: str, route: str, body: bytes, content_type: str) -> bytes:
    """The body forwarded to the backend (B5), which the B7 request hash covers.

    A JSON object body (``Content-Type`` JSON or absent) is re-marshalled in Go's form
    (:func:`broker.wire.forwarded_request.forwarded_json_body`: sorted keys, Go escaping and
    numbers), with ``stream_options.include_usage = true`` added to chatbot streams; ``serve``
    computes the same bytes before sending. Any other body (multipart, not JSON, not an object) is
    forwarded unchanged.

    On the JSON routes (:data:`JSON_ROUTES`) a JSON object body is re-marshalled whatever its
    ``Content-Type`` says (except ``multipart/*``): a backend may read a JSON body whatever its
    label, and a chat stream labelled ``text/plain`` was forwarded without the usage rewrite.

    Raises:
        ForwardedRequestError: a JSON number that cannot be forwarded exactly (400 at the route).
    """
    ctype = content_type.strip().lower()
    labelled_other = bool(ctype) and not is_json_content_type(ctype)
    if labelled_other and (route not in JSON_ROUTES or ctype.startswith("multipart/")):
        return body  # multipart and other typed bodies pass unchanged
    chat = service_type == "chatbot" and route == "/chat/completions"
    forwarded = forwarded_json_body(body, chat_stream_rewrite=chat)
    return body if forwarded is None or forwarded == body else forwarded


def forward_accept_encoding(value: str | None) -> str:
    """The ``Accept-Encoding`` to send to the backend for a client's header value.

    Keeps the client's entries (with their ``q`` values) whose coding is in
    :data:`DECODABLE_CODINGS`; ``"identity"`` when none is left or the client sent none.
    """
    kept = []
    for part in (value or "").split(","):
        coding = part.split(";", 1)[0].strip().lower()
        if coding in DECODABLE_CODINGS:
            kept.append(part.strip())
    return ", ".join(kept) or "identity"


def forward_headers(headers, extra: dict[str, str]) -> dict[str, str]:
    """Client headers minus the credential/legacy, hop-by-hop (also those the ``Connection``
    header names), browser-context and client-IP ones (``Forwarded``, ``X-Forwarded-*``,
    ``X-Real-IP``) (B5), with the ``Accept-Encoding`` of :func:`forward_accept_encoding`, plus the
    ``additionalSecret`` entries."""
    dropped = _STRIPPED
    if connection := headers.get("connection"):
        dropped = _STRIPPED | {name.strip().lower() for name in connection.split(",")}
    out = {k: v for k, v in headers.items() if k.lower() not in dropped}
    out["accept-encoding"] = forward_accept_encoding(headers.get("accept-encoding"))
    out.update(extra)
    return out


def response_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """Backend headers to copy to the client (hop-by-hop and ``Content-Length`` dropped), names
    lower-cased, repeated ones joined with ``", "``."""
    return copy_headers(headers, _HOP)


class BackendResponse:
    """A backend response whose body is not read yet: stream it with :meth:`aiter_raw`, then
    :meth:`aclose` it.

    Attributes:
        status_code: the HTTP status. headers: the response headers (case-insensitive mapping;
            repeated names are separate items).
    """

    __slots__ = ("_response", "headers", "status_code")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self.status_code: int = response.status
        self.headers = response.headers

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        """The body's bytes as received (not decompressed; chunked framing removed)."""
        async for chunk in self._response.content.iter_any():
            yield chunk

    async def aclose(self) -> None:
        """Hand the connection back to the pool (closed instead when the body was not read to
        its end)."""
        self._response.release()


class Forwarder:
    """A pooled HTTP client to the backends (:mod:`aiohttp`: its C parser costs a fraction of the
    CPU per request of a pure-Python HTTP/1.1 client, and the gateway forwards every request).

    Args:
        timeout: seconds a backend may stay silent (connection set up: 10 s; default 15 min, B5).
        keepalive: seconds an idle backend connection is kept for reuse (default
            :data:`BACKEND_KEEPALIVE`; keep it below the backend's own idle timeout).
    """

    def __init__(self, timeout: float = 900.0, keepalive: float = BACKEND_KEEPALIVE) -> None:
        self.timeout = timeout
        self.keepalive = keepalive
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # made on first use, inside the server's event loop
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, connect=10.0, sock_read=self.timeout),
                connector=aiohttp.TCPConnector(limit=200, keepalive_timeout=self.keepalive),
                # identity unless a request says otherwise (B5: only decodable codings)
                headers={"Accept-Encoding": "identity"},
                # bytes are sent as they are: no invented Content-Type
                skip_auto_headers=("Content-Type",),
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes,
        params: dict[str, str] | None = None,
    ) -> BackendResponse:
        """Send and return the response with its body **unread** (stream it, then close it).

        Raises:
            aiohttp.ClientError, asyncio.TimeoutError, OSError: the backend cannot be reached.
        """
        response = await self._client().request(
            method,
            url,
            headers=headers,
            data=body or None,
            params=params or None,
            allow_redirects=False,
        )
        return BackendResponse(response)

    async def aclose(self) -> None:
        """Close the pool."""
        if self._session is not None:
            await self._session.close()
            self._session = None
