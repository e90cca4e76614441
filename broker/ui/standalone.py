"""``0g-broker ui`` (alias ``ui start-web``, the official CLI's name): the user dashboard on its own
port (default 3090, bound to 127.0.0.1), with the actions that move money
(:mod:`broker.ui.actions`) that ``serve``'s dashboard does not offer.

Endpoints: those of :mod:`broker.ui.dashboard` (no API key: the server is local-only by default)
plus ``POST /ui/api/actions`` and ``POST /ui/api/actions/{id}/confirm`` (CSRF-checked).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from broker.asgi.body import read_capped_body
from broker.asgi.errors import RequestBodyTooLargeError
from broker.asgi.guard import LocalGuard, bound_host_names
from broker.ui.actions import SESSION_COOKIE, ActionBook, CsrfGuard
from broker.ui.dashboard import DashboardSource, build_dashboard_router, install_error_handler
from broker.ui.errors import BodyTooLargeError, UIInputError, UIStartError
from broker.ui.render import guard_refusal_body, mount_static
from broker.wire.json_body import InvalidJSONBodyError, loads_request_json

__all__ = ["ACTION_BODY_CAP", "DEFAULT_PORT", "create_ui_app", "serve_ui"]

#: ``0g-compute-cli ui start-web``'s port.
DEFAULT_PORT = 3090
#: The largest body ``POST /ui/api/actions`` reads, in bytes (an action is a few fields).
ACTION_BODY_CAP = 64 << 10


def create_ui_app(broker: Any, *, host: str = "127.0.0.1") -> FastAPI:
    """The standalone dashboard app.

    Args:
        broker: a :class:`broker.broker.Broker` (``.ledger`` for the account and the actions,
            ``.inference`` for providers and verification).
        host: the address it will bind (accepted as a ``Host`` name besides loopback).

    Returns:
        The FastAPI app (``app.state.ui``: the :class:`DashboardSource`; ``app.state.actions``:
        the :class:`ActionBook`).
    """
    guard = CsrfGuard(host)
    book = ActionBook(broker)

    def extra(request: Request) -> dict[str, Any]:
        return {"csrf_token": guard.token_for(request.cookies.get(SESSION_COOKIE))}

    source = DashboardSource(
        mode="standalone",
        get_broker=lambda: broker,
        get_inference=lambda: broker.inference,
        extra_config=extra,
    )
    app = FastAPI(title="0g-broker ui", docs_url=None, redoc_url=None, openapi_url=None)
    install_error_handler(app)
    mount_static(app)

    @app.middleware("http")
    async def session_cookie(request: Request, call_next):
        """Give each browser a session id (the CSRF token is bound to it), and refuse any
        request whose ``Host`` is not ours (DNS rebinding)."""
        if not guard.host_ok(request):
            return Response(
                '{"error": "refused: unexpected Host header"}',
                status_code=403,
                media_type="application/json",
            )
        fresh = None
        if request.url.path == "/ui/" and not request.cookies.get(SESSION_COOKIE):
            fresh = guard.new_session()
        response = await call_next(request)
        if fresh:
            response.set_cookie(
                SESSION_COOKIE, fresh, httponly=True, samesite="strict", path="/ui/"
            )
        return response

    @app.get("/", include_in_schema=False)
    async def root() -> Response:
        return RedirectResponse("/ui/", status_code=307)

    @app.post("/ui/api/actions")
    async def prepare(request: Request) -> dict[str, Any]:
        guard.check(request)
        try:
            raw = await read_capped_body(request, ACTION_BODY_CAP)
        except RequestBodyTooLargeError:
            raise BodyTooLargeError("the body of an action is at most 64 KiB") from None
        try:
            body = loads_request_json(raw)
        except InvalidJSONBodyError:
            raise UIInputError("the body is not valid JSON") from None
        return (await run_in_threadpool(book.prepare, body)).as_json()

    @app.post("/ui/api/actions/{action_id}/confirm")
    async def confirm(action_id: str, request: Request) -> dict[str, Any]:
        guard.check(request)
        return await run_in_threadpool(book.confirm, action_id)

    app.include_router(build_dashboard_router(source))
    # the servers' shared guard in front of it all: Host, Origin, Sec-Fetch-Site and JSON-only
    # bodies (the CSRF token and the per-request checks above stay as a second line)
    app.add_middleware(
        LocalGuard, allowed_hosts=bound_host_names(host), error_body=guard_refusal_body
    )
    app.state.ui = source
    app.state.actions = book
    return app


def serve_ui(broker: Any, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> None:
    """Run :func:`create_ui_app` with uvicorn on ``host:port`` until interrupted (blocking).

    Raises:
        UIStartError: the server did not start (port in use, address not available).
    """
    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(create_ui_app(broker, host=host), host=host, port=port, log_level="critical")
    )
    try:
        server.run()
    except SystemExit:  # uvicorn exits when it cannot bind; say it in one line instead
        pass
    if not server.started:
        raise UIStartError(
            f"the dashboard did not start on {host}:{port} (port in use, or the "
            "address is not available here)"
        )
