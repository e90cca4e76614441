"""The user dashboard: its JSON endpoints (shared by ``serve`` and the standalone ``0g-broker ui``)
and :func:`mount_dashboard`, which adds it to ``serve`` at ``/ui/``.

Endpoints (all ``GET`` unless noted; ``{"error": "..."}`` on failure):

* ``/ui/`` — the page (no data in it; it asks for the API key once and keeps it in the tab's
  ``sessionStorage``, sent as ``Authorization: Bearer``; never in a URL).
* ``/ui/api/config`` — mode, whether a key is needed, the served provider (no key needed: nothing
  beyond ``/health``).
* ``/ui/api/account`` — :func:`broker.ui.views.account_view` (the numbers of ``get-account --json``
  and ``get-sub-account --json``).
* ``/ui/api/funding`` — auto-funding state (``InferenceBroker.auto_funding_status``) and recent
  transfers and failures with their reason.
* ``/ui/api/requests?verified=true|false|none|off|error&limit=N`` — recent requests through serve.
* ``/ui/api/providers`` — the services on chain; ``POST /ui/api/providers/{address}/verify`` runs
  the attestation check and returns the typed report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from broker._exceptions import BrokerError, InputError
from broker.asgi.keys import bearer_token, key_matches
from broker.chain.addresses import checksum_address
from broker.ui.activity import FundingLog, RequestLog, RequestLogMiddleware
from broker.ui.errors import UIAuthError, UIChainError, UIError, UIInputError
from broker.ui.render import error_json, mount_static, page
from broker.ui.views import account_view, providers_view, verification_report_view

__all__ = ["DashboardSource", "build_dashboard_router", "mount_dashboard"]

_OUTCOMES = ("true", "false", "none", "off", "error")


@dataclass
class DashboardSource:
    """Where the dashboard's data comes from.

    Attributes:
        mode: ``"serve"`` or ``"standalone"``.
        get_broker: ``() -> Broker | None`` (the full broker; ``None``: no ledger views).
        get_inference: ``() -> InferenceBroker``.
        get_provider: ``() -> str | None``: the provider ``serve`` serves (``None`` standalone).
        get_api_key: ``() -> str | None``: the key the JSON endpoints require (``None``: none).
        requests: the :class:`RequestLog` (empty when nothing feeds it).
        funding: the :class:`FundingLog`.
        extra_config: merged into ``/ui/api/config`` (e.g. the CSRF token of the standalone app).
    """

    mode: str
    get_broker: Callable[[], Any]
    get_inference: Callable[[], Any]
    get_provider: Callable[[], str | None] = lambda: None
    get_api_key: Callable[[], str | None] = lambda: None
    requests: RequestLog = field(default_factory=RequestLog)
    funding: FundingLog = field(default_factory=FundingLog)
    extra_config: Callable[[Request], dict[str, Any]] = lambda _r: {}


def _check_key(source: DashboardSource, request: Request) -> None:
    key = source.get_api_key()
    if key is None:
        return
    if not key_matches(bearer_token(request.headers.get("authorization")), key):
        raise UIAuthError("Incorrect API key provided")


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a blocking library call in a worker thread; library errors become ui errors in words."""
    try:
        return await run_in_threadpool(fn, *args)
    except UIError:
        raise
    except InputError as exc:
        raise UIInputError(str(exc)) from None
    except BrokerError as exc:
        raise UIChainError(f"{type(exc).__name__}: {exc}") from None


def build_dashboard_router(source: DashboardSource) -> APIRouter:
    """The dashboard's page and JSON routes over ``source`` (see the module docstring).

    Returns:
        An :class:`APIRouter` with paths under ``/ui``; include it in an app that also has
        :func:`broker.ui.render.mount_static` and an exception handler for :class:`UIError`
        (:func:`install_error_handler`).
    """

    def require_key(request: Request) -> None:
        _check_key(source, request)

    router = APIRouter()
    api = APIRouter(dependencies=[Depends(require_key)])

    @router.get("/ui", include_in_schema=False)
    async def ui_root() -> Response:
        return RedirectResponse("/ui/", status_code=307)

    @router.get("/ui/", response_class=HTMLResponse, include_in_schema=False)
    async def dashboard_page(request: Request) -> HTMLResponse:
        return page(request, "dashboard.html", mode=source.mode)

    @router.get("/ui/api/config")
    async def config(request: Request) -> dict[str, Any]:
        """What the page needs before the key: the user's address only with the key."""
        try:
            _check_key(source, request)
            user = getattr(source.get_inference(), "address", None)
        except UIAuthError:
            user = None
        return {
            "mode": source.mode,
            "key_required": source.get_api_key() is not None,
            "provider": source.get_provider(),
            "user": user,
            "actions": source.mode == "standalone",
            **source.extra_config(request),
        }

    @api.get("/ui/api/account")
    async def account() -> dict[str, Any]:
        broker = source.get_broker()
        if broker is None:
            raise UIInputError("no ledger access in this process")
        return await _call(account_view, broker)

    @api.get("/ui/api/funding")
    async def funding() -> dict[str, Any]:
        inference = source.get_inference()
        provider = source.get_provider()
        status = None
        if provider and hasattr(inference, "auto_funding_status"):
            status = (await _call(inference.auto_funding_status, provider)).model_dump(mode="json")
        return {"provider": provider, "status": status, "events": source.funding.recent()}

    @api.get("/ui/api/requests")
    async def requests(verified: str | None = None, limit: int = 200) -> dict[str, Any]:
        if verified is not None and verified not in _OUTCOMES:
            raise UIInputError(f"verified must be one of {', '.join(_OUTCOMES)}")
        limit = max(1, min(limit, 500))
        rows = [r.as_json() for r in source.requests.recent(limit, verified)]
        if any(r["chat_id"] for r in rows):
            results = await _call(_verification_reasons, source, 500)
            for row in rows:
                found = results.get(row["chat_id"].lower()) if row["chat_id"] else None
                if found is not None:
                    row["verification_reason"], row["verification_detail"] = found
                    if row["verified"] == "false":
                        row["reason"] = f"{found[0]}: {found[1]}" if found[1] else found[0]
        return {"requests": rows}

    @api.get("/ui/api/providers")
    async def providers() -> dict[str, Any]:
        return {
            "providers": await _call(providers_view, source.get_inference()),
            "served": source.get_provider(),
        }

    @api.post("/ui/api/providers/{address}/verify")
    async def verify(address: str) -> dict[str, Any]:
        try:
            provider = checksum_address(address, field="provider")
        except InputError as exc:
            raise UIInputError(str(exc)) from None
        return await _call(verification_report_view, source.get_inference(), provider)

    router.include_router(api)
    return router


def _verification_reasons(source: DashboardSource, limit: int) -> dict[str, tuple[str, str]]:
    """``chat_id (lower) -> (reason, detail)`` of the latest stored verification results
    (``fee_store.recent_verifications``; blocking)."""
    inference = source.get_inference()
    store = getattr(inference, "fee_store", None)
    if store is None:
        return {}
    records = store.recent_verifications(limit, provider=source.get_provider())
    return {
        r.chat_id.lower(): (r.reason.value, r.detail or "") for r in reversed(records) if r.chat_id
    }


def install_error_handler(app: FastAPI) -> None:
    """Answer :class:`UIError` as ``{"error": "..."}`` with its status."""

    @app.exception_handler(UIError)
    async def _ui_error(_req: Request, exc: UIError) -> JSONResponse:
        return error_json(exc)


def mount_dashboard(
    app: FastAPI, inference: Any, broker: Any = None, settings: Any = None
) -> DashboardSource:
    """Add the dashboard to ``serve``'s app at ``/ui/`` (same origin, same API key).

    Args:
        app: the proxy app (``app.state.proxy`` is its :class:`~broker.proxy.context.ProxyContext`
            once started). inference: its ``InferenceBroker`` (auto-funding events are recorded
            from now on). broker: the full broker when there is one (ledger views).
            settings: serve's :class:`~broker.proxy.settings.ServeSettings` (its ``api_key``
            guards the JSON endpoints as it guards ``/v1``).

    Returns:
        The :class:`DashboardSource` (also ``app.state.ui``); its request log is fed by a
        middleware added here.
    """

    def api_key() -> str | None:
        ctx = getattr(app.state, "proxy", None)
        current = ctx.settings if ctx is not None else settings
        key = getattr(current, "api_key", None)
        return key.get_secret_value() if key is not None else None

    def provider() -> str | None:
        ctx = getattr(app.state, "proxy", None)
        return ctx.provider if ctx is not None else None

    source = DashboardSource(
        mode="serve",
        get_broker=lambda: broker,
        get_inference=lambda: inference,
        get_provider=provider,
        get_api_key=api_key,
    )
    if hasattr(inference, "add_funding_listener"):
        inference.add_funding_listener(source.funding)
    install_error_handler(app)
    mount_static(app)
    app.include_router(build_dashboard_router(source))
    app.add_middleware(RequestLogMiddleware, log=source.requests)
    app.state.ui = source
    return source
