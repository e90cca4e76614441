"""The gateway's two CORS policies (``provider-gateway.md`` B2), chosen by path.

* ``/v1/proxy/*`` — gin-cors: any origin, **reflected** (``Access-Control-Allow-Origin: <Origin>``)
  with ``Access-Control-Allow-Credentials: true``; allowed headers :data:`PROXY_ALLOW_HEADERS`;
  exposed headers :data:`PROXY_EXPOSE_HEADERS`; ``Access-Control-Max-Age: 43200`` (12 h); a
  preflight is answered 204. Starlette's :class:`~starlette.middleware.cors.CORSMiddleware` does
  the work.
* the other ``/v1/*`` handler routes (quote, models, unsettledfee, async) — a fixed policy:
  ``Access-Control-Allow-Origin: *``, allowed headers :data:`HANDLER_ALLOW_HEADERS` (with
  ``Authorization``), exposed headers ``ZG-Res-Key, ZG-Res-Signature, Retry-After``; on every
  response, and ``OPTIONS`` is answered 204 without reaching the routes.

Paths outside ``/v1`` (``/health``) get no CORS headers.
"""

from __future__ import annotations

from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "HANDLER_ALLOW_HEADERS",
    "HANDLER_ALLOW_METHODS",
    "HANDLER_EXPOSE_HEADERS",
    "PROXY_ALLOW_HEADERS",
    "PROXY_EXPOSE_HEADERS",
    "PROXY_MAX_AGE",
    "GatewayCORS",
]

PROXY_ALLOW_HEADERS = ("Content-Type", "Authorization", "X-Requested-With", "Accept", "Origin")
#: B2's list plus ``ZG-Res-Signature`` (this gateway's extension, :mod:`broker.provider.billed`).
PROXY_EXPOSE_HEADERS = (
    "ZG-Res-Key",
    "ZG-Res-Signature",
    "Provider",
    "Content-Type",
    "Content-Encoding",
)
#: 12 h in seconds.
PROXY_MAX_AGE = 43200
HANDLER_ALLOW_HEADERS = ("Origin", "Content-Type", "Accept", "Authorization", "X-Requested-With")
HANDLER_ALLOW_METHODS = ("GET", "POST", "PUT", "DELETE", "OPTIONS")
#: B2's list plus ``ZG-Res-Signature`` (signed async job answers carry it).
HANDLER_EXPOSE_HEADERS = ("ZG-Res-Key", "ZG-Res-Signature", "Retry-After")

_HANDLER_HEADERS = [
    (b"access-control-allow-origin", b"*"),
    (b"access-control-allow-methods", ", ".join(HANDLER_ALLOW_METHODS).encode()),
    (b"access-control-allow-headers", ", ".join(HANDLER_ALLOW_HEADERS).encode()),
    (b"access-control-expose-headers", ", ".join(HANDLER_EXPOSE_HEADERS).encode()),
]


class _ProxyCORS(CORSMiddleware):
    """Starlette's CORS with gin-cors' 204 for an accepted preflight."""

    def preflight_response(self, request_headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code != 200:
            return response
        headers = {
            k: v
            for k, v in response.headers.items()
            if k.lower() not in ("content-length", "content-type")
        }
        return Response(status_code=204, headers=headers)


class GatewayCORS:
    """ASGI middleware applying the B2 policy of the request's path (see the module docstring).

    Args:
        app: the wrapped ASGI app.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.proxy = _ProxyCORS(
            app,
            allow_origin_regex=".*",
            allow_credentials=True,
            allow_methods=["*"],
            allow_headers=list(PROXY_ALLOW_HEADERS),
            expose_headers=list(PROXY_EXPOSE_HEADERS),
            max_age=PROXY_MAX_AGE,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path == "/v1/proxy" or path.startswith("/v1/proxy/"):
            await self.proxy(scope, receive, send)
            return
        if not path.startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        if scope["method"] == "OPTIONS":
            await Response(
                status_code=204, headers={k.decode(): v.decode() for k, v in _HANDLER_HEADERS}
            )(scope, receive, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {k for k, _ in _HANDLER_HEADERS}
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message = {**message, "headers": headers + _HANDLER_HEADERS}
            await send(message)

        await self.app(scope, receive, send_with_cors)
