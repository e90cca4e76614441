"""``LocalGuard``: a pure-ASGI middleware that keeps web pages from using a local HTTP server.

A server on ``127.0.0.1`` is reachable by every page the user's browser opens. Without checks, a
page can (1) send a "simple" cross-origin ``POST`` (``Content-Type: text/plain``, no preflight) that
spends money, and (2) rebind its own DNS name to ``127.0.0.1`` and then *read* the server's answers
(the ``Host`` header carries the page's name). Browsers and local servers fixed this the same way
(Jupyter, Ollama); this middleware applies those checks in this order:

1. **Host** (every HTTP and WebSocket request): a loopback name with any port (``localhost``,
   ``*.localhost``, ``127.0.0.0/8``, ``[::1]``) or an entry of ``allowed_hosts`` (``name`` for any
   port, ``name:port`` for one). ``"*"`` accepts any Host: that turns the DNS-rebinding protection
   off, so use it only on a server meant to be reached under names you cannot list, and never with
   ``allowed_origins`` relying on same-origin (``"*"`` never makes a Host "trusted", below). A
   request without ``Host`` (HTTP/1.0 tools) passes. Refused with 403 ``host_not_allowed``.
2. **CORS preflight** (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``): 204 with
   ``Access-Control-Allow-*`` headers for an allowed origin, else 403 ``origin_not_allowed``; it
   never reaches the app.
3. **Origin**: absent (curl, SDKs, the ``openai`` client) passes; present, it must be
   *same-origin* with a trusted Host (loopback or explicitly listed; e.g. our own dashboard pages
   served by the same server) or an entry of ``allowed_origins`` (``scheme://host[:port]``; default
   ports are implied; ``"*"`` and ``null`` are refused). Allowed cross-origin requests get
   ``Access-Control-Allow-Origin: <origin>`` and ``Vary: Origin``. Refused with 403
   ``origin_not_allowed``.
4. **Sec-Fetch-Site: cross-site** (sent by browsers even when ``Origin`` is not, e.g. an ``<img>``
   GET or a navigation) is refused (403 ``cross_site_request``) unless ``Origin`` is in
   ``allowed_origins``.
5. **Content-Type** on unsafe methods (POST / PUT / PATCH / DELETE) when ``enforce_content_types``:
   the media type must be one the path accepts (``content_types[path]``, default
   :data:`JSON_TYPES`), else 415 ``unsupported_media_type``. ``text/plain`` and form bodies, which
   a page can send without a preflight, are thereby refused on JSON routes. A body-less request
   without ``Content-Type`` passes. ``multipart/form-data`` is itself a type pages can send
   cross-origin, so multipart routes rely on checks 3 and 4 (browsers always send ``Origin`` on
   cross-origin POSTs).

Refusals are answered by the middleware in the app's own error shape: ``error_body(refusal)``
returns the JSON object (default :func:`openai_error_body`,
``{"error": {"message", "type", "code", "param"}}``).

Usage::

    app.add_middleware(LocalGuard, allowed_hosts=settings.allowed_hosts,
                       allowed_origins=settings.allowed_origins,
                       content_types={"/v1/images/edits": MULTIPART_TYPES})
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from broker.asgi.errors import GuardConfigError

__all__ = [
    "JSON_TYPES",
    "MULTIPART_TYPES",
    "UNSAFE_METHODS",
    "GuardRefusal",
    "LocalGuard",
    "bound_host_names",
    "is_loopback_host",
    "openai_error_body",
    "split_list",
]

logger = logging.getLogger(__name__)

#: Media types of JSON routes.
JSON_TYPES = frozenset({"application/json"})
#: Media types of multipart routes (file uploads).
MULTIPART_TYPES = frozenset({"multipart/form-data"})
#: Methods that must carry an accepted ``Content-Type`` (when they carry a body).
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
_TOKEN_LIST = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+(\s*,\s*[A-Za-z0-9!#$%&'*+.^_`|~-]+)*$")
_SHOWN = 100  # most characters of a client-sent value repeated in a message


@dataclass(frozen=True)
class GuardRefusal:
    """Why a request was refused.

    Attributes:
        status: HTTP status (403 or 415).
        code: ``host_not_allowed``, ``origin_not_allowed``, ``cross_site_request`` or
            ``unsupported_media_type``.
        message: one line for the client (client-sent values are truncated and quoted).
    """

    status: int
    code: str
    message: str


def openai_error_body(refusal: GuardRefusal) -> dict:
    """The OpenAI error object for ``refusal``: ``{"error": {"message", "type", "code", "param"}}``
    with type ``permission_error`` (403) or ``invalid_request_error`` (415)."""
    kind = "permission_error" if refusal.status == 403 else "invalid_request_error"
    return {
        "error": {"message": refusal.message, "type": kind, "code": refusal.code, "param": None}
    }


def split_list(value: object) -> object:
    """A settings helper: ``"a, b"`` or ``'["a", "b"]'`` (environment values) → ``["a", "b"]``;
    an empty string → ``[]``; anything else is returned as given (for pydantic to validate)."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            return json.loads(text)
        return [part.strip() for part in text.split(",") if part.strip()]
    return value


def _shown(value: str) -> str:
    return repr(value[:_SHOWN] + ("…" if len(value) > _SHOWN else ""))


@functools.lru_cache(maxsize=256)
def _split_host(value: str) -> tuple[str, int | None] | None:
    """``Host`` header → (lower-case host without brackets or trailing dot, port or None);
    ``None`` when malformed. Remembered for the last 256 values (every request's ``Host`` is
    parsed)."""
    value = value.strip().lower()
    if not value:
        return None
    port_text = ""
    if value.startswith("["):
        end = value.find("]")
        if end < 0:
            return None
        host, rest = value[1:end], value[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                return None
            port_text = rest[1:]
    elif value.count(":") > 1:  # an unbracketed IPv6 literal
        host = value
    else:
        host, _, port_text = value.partition(":")
    port = None
    if port_text:
        if not port_text.isdigit() or int(port_text) > 65535:
            return None
        port = int(port_text)
    host = host.removesuffix(".")
    if not host or any(c in host for c in "/\\@?#% \t"):
        return None
    return host, port


@functools.lru_cache(maxsize=256)
def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (no port, no brackets, lower case) names this machine's loopback interface:
    ``localhost``, ``*.localhost`` (RFC 6761), ``127.0.0.0/8``, ``::1`` (and its IPv4-mapped
    form). Remembered for the last 256 names (every request's ``Host`` is checked)."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return bool(ip.is_loopback or (mapped is not None and mapped.is_loopback))


def bound_host_names(bind: str) -> list[str]:
    """The ``Host`` names a server bound to ``bind`` accepts besides the loopback names: the address
    itself when it is a specific non-loopback one (``"192.168.1.5"`` → ``["192.168.1.5"]``, an
    address cannot be rebound); none for wildcards (``0.0.0.0``, ``::``, ``""``) or loopback, where
    the operator lists the names clients use in ``allowed_hosts``."""
    host = bind.strip().strip("[]").lower()
    if host in ("", "0.0.0.0", "::") or is_loopback_host(host):
        return []
    return [host]


def _origin_key(value: str) -> tuple[str, str, int] | None:
    """``scheme://host[:port]`` → (scheme, host, port with the default filled); ``None`` when it is
    not such an origin."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if (
        not scheme
        or not host
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username
        or parts.password
    ):
        return None
    if port is None:
        port = _DEFAULT_PORTS.get(scheme)
        if port is None:
            return None
    return scheme, host, port


#: The scope key under which the guard keeps the request's headers by name (built once).
_HEADERS_KEY = "broker.guard.headers"


def _header(scope: dict, name: bytes) -> str | None:
    """The first value of header ``name`` (lower case), or ``None``. The headers are indexed by
    name once per request, in the scope, and looked up from there by every check."""
    found = scope.get(_HEADERS_KEY)
    if found is None:
        found = {}
        for key, value in scope.get("headers") or ():
            found.setdefault(key.lower(), value)
        scope[_HEADERS_KEY] = found
    value = found.get(name)
    return None if value is None else value.decode("latin-1")


class LocalGuard:
    """Pure-ASGI middleware applying the checks of the module docstring.

    Args:
        app: the wrapped ASGI app.
        allowed_hosts: extra ``Host`` names (``name`` any port, ``name:port``, ``[v6]``) or ``"*"``.
        allowed_origins: origins allowed to call cross-origin (``http://localhost:5173``).
        enforce_content_types: check ``Content-Type`` on unsafe methods (check 5).
        content_types: exact path (no trailing ``/``) → accepted media types; other paths accept
            :data:`JSON_TYPES`.
        error_body: ``GuardRefusal -> dict`` rendering a refusal in the app's error shape.
        path_error_bodies: ``{path prefix: renderer}`` for paths of an API with another error
            shape (serve's Pixazo paths); the first prefix the path starts with wins, else
            ``error_body``.
        hosts_hint / origins_hint: appended to the host / origin refusal messages (e.g. "; list it
            in ZG_SERVE_ALLOWED_HOSTS").
        expose_headers: response headers an allowed cross-origin page may read.
        allow_methods: methods announced in a preflight answer.
        max_age: seconds a browser may cache a preflight answer.

    Raises:
        GuardConfigError: an allowed host or origin is malformed, or ``"*"`` is given as an origin.
    """

    def __init__(
        self,
        app,
        *,
        allowed_hosts: Iterable[str] = (),
        allowed_origins: Iterable[str] = (),
        enforce_content_types: bool = True,
        content_types: Mapping[str, Iterable[str]] | None = None,
        error_body: Callable[[GuardRefusal], dict] = openai_error_body,
        path_error_bodies: Mapping[str, Callable[[GuardRefusal], dict]] | None = None,
        hosts_hint: str = "",
        origins_hint: str = "",
        expose_headers: Iterable[str] = (),
        allow_methods: Iterable[str] = ("GET", "POST", "OPTIONS"),
        max_age: int = 600,
    ) -> None:
        self.app = app
        self.any_host = False
        self.host_names: set[str] = set()
        self.host_ports: set[tuple[str, int]] = set()
        for entry in allowed_hosts:
            entry = str(entry).strip()
            if entry == "*":
                self.any_host = True
                continue
            parsed = _split_host(entry)
            if parsed is None:
                raise GuardConfigError(
                    f"allowed host {_shown(entry)} is not a host name "
                    "(name, name:port or [ipv6]:port)"
                )
            host, port = parsed
            if port is None:
                self.host_names.add(host)
            else:
                self.host_ports.add((host, port))
        self.origins: set[tuple[str, str, int]] = set()
        for entry in allowed_origins:
            entry = str(entry).strip()
            if entry in ("*", "null"):
                raise GuardConfigError(
                    f"allowed origin {entry!r} would let every web page use "
                    "this server; list the origins (scheme://host[:port])"
                )
            key = _origin_key(entry)
            if key is None:
                raise GuardConfigError(
                    f"allowed origin {_shown(entry)} is not an origin "
                    "(scheme://host[:port], no path)"
                )
            self.origins.add(key)
        self.enforce_content_types = enforce_content_types
        self.content_types = {
            path.rstrip("/") or "/": frozenset(t.lower() for t in types)
            for path, types in (content_types or {}).items()
        }
        self.error_body = error_body
        self.path_error_bodies = tuple((path_error_bodies or {}).items())
        self.hosts_hint, self.origins_hint = hosts_hint, origins_hint
        self.expose_headers = ", ".join(expose_headers)
        self.allow_methods = ", ".join(allow_methods)
        self.max_age = max_age

    # ------------------------------------------------------------------ checks

    def _trusted_host(self, host: str, port: int | None) -> bool:
        """Loopback or explicitly listed (``"*"`` does not count)."""
        return (
            is_loopback_host(host)
            or host in self.host_names
            or (port is not None and (host, port) in self.host_ports)
        )

    def _check_host(self, value: str | None) -> GuardRefusal | None:
        if value is None or self.any_host:
            return None
        parsed = _split_host(value)
        if parsed is not None and self._trusted_host(*parsed):
            return None
        return GuardRefusal(
            403,
            "host_not_allowed",
            f"Host {_shown(value)} is not allowed: use a loopback address "
            f"(localhost, 127.0.0.1, [::1]){self.hosts_hint}",
        )

    def _origin_allowed(self, scope: dict, origin: str) -> tuple[bool, bool]:
        """(allowed, listed in ``allowed_origins``)."""
        key = _origin_key(origin)
        if key is None:
            return False, False
        if key in self.origins:
            return True, True
        host_value = _header(scope, b"host")
        parsed = _split_host(host_value) if host_value else None
        if parsed is None:
            return False, False
        scheme = scope.get("scheme", "http")
        host, port = parsed
        port = port if port is not None else _DEFAULT_PORTS.get(scheme, 80)
        same = key == (scheme, host, port) or (
            scheme in ("ws", "wss") and key == ({"ws": "http", "wss": "https"}[scheme], host, port)
        )
        return same and self._trusted_host(host, parsed[1]), False

    def _origin_refusal(self, origin: str) -> GuardRefusal:
        return GuardRefusal(
            403,
            "origin_not_allowed",
            f"Origin {_shown(origin)} is not allowed to use this server{self.origins_hint}",
        )

    def _check_content_type(self, scope: dict) -> GuardRefusal | None:
        if not self.enforce_content_types or scope.get("method", "GET") not in UNSAFE_METHODS:
            return None
        path = scope.get("path", "").rstrip("/") or "/"
        accepted = self.content_types.get(path, JSON_TYPES)
        value = _header(scope, b"content-type")
        if value is None:
            length = _header(scope, b"content-length")
            if _header(scope, b"transfer-encoding") is None and (
                length is None or length.strip() == "0"
            ):
                return None  # no body at all
            got = "no Content-Type"
        else:
            media = value.split(";", 1)[0].strip().lower()
            if media in accepted:
                return None
            got = _shown(value)
        wanted = " or ".join(sorted(accepted))
        return GuardRefusal(
            415,
            "unsupported_media_type",
            f"Content-Type must be {wanted} for {scope.get('method')} "
            f"{scope.get('path', '')[:_SHOWN]} (got {got})",
        )

    def check(self, scope: dict) -> tuple[GuardRefusal | None, str | None]:
        """Run checks 1, 3, 4 and 5 on an HTTP or WebSocket ``scope``.

        Returns:
            ``(refusal or None, origin to answer with CORS headers or None)``.
        """
        refusal = self._check_host(_header(scope, b"host"))
        if refusal:
            return refusal, None
        origin = _header(scope, b"origin")
        cors_origin = None
        listed = False
        if origin is not None:
            allowed, listed = self._origin_allowed(scope, origin)
            if not allowed:
                return self._origin_refusal(origin), None
            cors_origin = origin if listed else None
        site = (_header(scope, b"sec-fetch-site") or "").strip().lower()
        if site == "cross-site" and not listed:
            return GuardRefusal(
                403,
                "cross_site_request",
                "cross-site browser requests are refused "
                f"(Sec-Fetch-Site: cross-site){self.origins_hint}",
            ), None
        if scope["type"] == "http":
            refusal = self._check_content_type(scope)
            if refusal:
                return refusal, cors_origin
        return None, cors_origin

    # ------------------------------------------------------------------ ASGI

    def _body_of(self, scope: dict, refusal: GuardRefusal) -> dict:
        """``refusal`` in the error shape of the API the request's path belongs to."""
        path = scope.get("path", "")
        for prefix, render in self.path_error_bodies:
            if path.startswith(prefix):
                return render(refusal)
        return self.error_body(refusal)

    def _cors_headers(self, origin: str) -> list[tuple[bytes, bytes]]:
        headers = [(b"access-control-allow-origin", origin.encode("latin-1")), (b"vary", b"Origin")]
        if self.expose_headers:
            headers.append((b"access-control-expose-headers", self.expose_headers.encode()))
        return headers

    async def _answer(
        self, send, status: int, body: dict | None, headers: list[tuple[bytes, bytes]] = ()
    ) -> None:
        payload = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
        out = list(headers)
        if body is not None:
            out += [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ]
        await send({"type": "http.response.start", "status": status, "headers": out})
        await send({"type": "http.response.body", "body": payload})

    async def _refuse(
        self, scope: dict, receive, send, refusal: GuardRefusal, cors_origin: str | None
    ) -> None:
        logger.info("refused %s %s: %s", scope.get("method", "WS"), scope.get("path"), refusal.code)
        if scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.close", "code": 1008})
            return
        await self._answer(
            send,
            refusal.status,
            self._body_of(scope, refusal),
            self._cors_headers(cors_origin) if cors_origin else [],
        )

    async def _preflight(self, scope: dict, send, origin: str) -> None:
        allowed, _listed = self._origin_allowed(scope, origin)
        if not allowed:
            refusal = self._origin_refusal(origin)
            logger.info("refused preflight for %s: %s", scope.get("path"), refusal.code)
            await self._answer(send, 403, self._body_of(scope, refusal))
            return
        requested = (_header(scope, b"access-control-request-headers") or "").strip()
        headers = self._cors_headers(origin) + [
            (b"access-control-allow-methods", self.allow_methods.encode()),
            (b"access-control-max-age", str(self.max_age).encode()),
        ]
        if requested and _TOKEN_LIST.match(requested):
            headers.append((b"access-control-allow-headers", requested.encode("latin-1")))
        await self._answer(send, 204, None, headers)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "http" and scope.get("method") == "OPTIONS":
            origin = _header(scope, b"origin")
            if origin is not None and _header(scope, b"access-control-request-method"):
                refusal = self._check_host(_header(scope, b"host"))
                if refusal:
                    await self._refuse(scope, receive, send, refusal, None)
                    return
                await self._preflight(scope, send, origin)
                return
        refusal, cors_origin = self.check(scope)
        if refusal:
            await self._refuse(scope, receive, send, refusal, cors_origin)
            return
        if cors_origin is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = self._cors_headers(cors_origin)
        names = {name for name, _ in extra}

        async def send_with_cors(message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers", [])
                vary = [v.decode("latin-1") for k, v in headers if k.lower() == b"vary"]
                kept = [(k, v) for k, v in headers if k.lower() not in names]
                added = [
                    (k, ", ".join([*vary, "Origin"]).encode("latin-1")) if k == b"vary" else (k, v)
                    for k, v in extra
                ]
                message = {**message, "headers": kept + added}
            await send(message)

        await self.app(scope, receive, send_with_cors)
