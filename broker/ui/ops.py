"""The provider's ops page on ``provider serve`` at ``/ui/`` and the gateway's Prometheus
``/metrics``, both behind the gateway's admin key.

Admin key: ``gateway.extra["admin_key"]``, else the ``ZG_PROVIDER_ADMIN_KEY`` environment variable,
else the file named by ``ZG_PROVIDER_ADMIN_KEY_FILE`` (never a command-line argument). Without one
the page and ``/metrics`` answer 403 saying how to set it. Clients send
``Authorization: Bearer <admin key>`` (the page asks once and keeps it in the tab's
``sessionStorage``; Prometheus: ``authorization.credentials_file``).

JSON: ``GET /ui/api/ops`` — unsettled fees per user, settlement history (batch, amount, transaction
hash, status), pending and refused settlements, request counts, the worker's state
(``/v1/internal/status`` of the image backend) with the recent generation times seen here, and
per-minute traffic (answered, rate-limited, errors) of the last hour.

Metrics (prefix ``zg_gateway_``): ``requests_total{route,status}``,
``request_duration_seconds{route}``, ``rate_limited_total{route}``, ``unsettled_fee_neuron``,
``request_rows{status}`` and ``settlement_batches{status}`` (gauges from the database),
``worker_up``, ``worker_loaded``, ``worker_queue_length``, ``worker_running``.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

import httpx
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.concurrency import run_in_threadpool

from broker.asgi.keys import bearer_token, key_matches
from broker.provider import ops as queries
from broker.provider.db import BatchStatus
from broker.ui.errors import AdminKeyMissingError, UIAuthError, UIError
from broker.ui.render import error_json, mount_static, page
from broker.units import format_0g

__all__ = ["ADMIN_KEY_ENV", "ADMIN_KEY_FILE_ENV", "GatewayActivity", "admin_key", "mount_ops"]

ADMIN_KEY_ENV = "ZG_PROVIDER_ADMIN_KEY"
ADMIN_KEY_FILE_ENV = "ZG_PROVIDER_ADMIN_KEY_FILE"
_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900)
_KNOWN = (
    "/health",
    "/metrics",
    "/v1/quote",
    "/v1/models",
    "/v1/proxy/images/generations",
    "/v1/proxy/images/edits",
    "/v1/proxy/chat/completions",
    "/v1/proxy/audio/transcriptions",
    "/v1/proxy/async/images/generations",
    "/v1/proxy/async/images/edits",
    "/v1/async/images/generations",
    "/v1/async/images/edits",
    "/v1/proxy/models",
)
_IMAGE_ROUTES = ("/v1/proxy/images/generations", "/v1/proxy/images/edits")


def admin_key(gw: Any) -> str | None:
    """The admin key (see the module docstring), or ``None`` when none is configured.

    Raises:
        AdminKeyMissingError: ``ZG_PROVIDER_ADMIN_KEY_FILE`` names a file that cannot be read.
    """
    key = gw.extra.get("admin_key") if isinstance(getattr(gw, "extra", None), dict) else None
    key = key or os.environ.get(ADMIN_KEY_ENV)
    if not key and os.environ.get(ADMIN_KEY_FILE_ENV):
        try:
            key = Path(os.environ[ADMIN_KEY_FILE_ENV]).expanduser().read_text().strip()
        except OSError as exc:
            raise AdminKeyMissingError(
                f"cannot read {ADMIN_KEY_FILE_ENV}: {exc.strerror or exc}"
            ) from None
    return key or None


def _route_label(path: str) -> str:
    if path in _KNOWN:
        return path
    if path.startswith(("/v1/proxy/async/jobs/", "/v1/async/jobs/")):
        return "/v1/proxy/async/jobs/{id}"
    if path.startswith("/v1/proxy/signature/"):
        return "/v1/proxy/signature/{id}"
    if path.startswith("/v1/user/"):
        return "/v1/user/{address}/unsettledfee"
    if path.startswith("/ui"):
        return "/ui"
    return "other"


class GatewayActivity:
    """What the gateway answered, for the ops page (last hour, per minute; recent image
    generation times) and for Prometheus (own registry per gateway)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "zg_gateway_requests",
            "Requests answered by the gateway.",
            ["route", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "zg_gateway_request_duration_seconds",
            "Time to answer (to the first byte for streams).",
            ["route"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.rate_limited = Counter(
            "zg_gateway_rate_limited",
            "Requests refused with 429 (rate or concurrency limits).",
            ["route"],
            registry=r,
        )
        self.unsettled = Gauge(
            "zg_gateway_unsettled_fee_neuron",
            "Fees billed and not yet paid on chain, neuron.",
            registry=r,
        )
        self.rows = Gauge(
            "zg_gateway_request_rows", "Billed request rows by status.", ["status"], registry=r
        )
        self.batches = Gauge(
            "zg_gateway_settlement_batches", "Settlement batches by status.", ["status"], registry=r
        )
        self.worker_up = Gauge(
            "zg_gateway_worker_up", "1 when the worker's status answered.", registry=r
        )
        self.worker_loaded = Gauge(
            "zg_gateway_worker_loaded", "1 when the model is loaded.", registry=r
        )
        self.worker_queue = Gauge(
            "zg_gateway_worker_queue_length", "Jobs waiting in the worker.", registry=r
        )
        self.worker_running = Gauge(
            "zg_gateway_worker_running", "Jobs running in the worker.", registry=r
        )
        self._minutes: deque[list] = deque(maxlen=60)  # [minute, ok, 429, 4xx, 5xx]
        self._generations: deque[tuple[float, float, int]] = deque(maxlen=50)
        self._lock = threading.Lock()

    def observe(self, path: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        route = _route_label(path)
        self.requests.labels(route=route, status=str(status)).inc()
        self.latency.labels(route=route).observe(seconds)
        if status == 429:
            self.rate_limited.labels(route=route).inc()
        minute = int(time.time() // 60) * 60
        with self._lock:
            if not self._minutes or self._minutes[-1][0] != minute:
                self._minutes.append([minute, 0, 0, 0, 0])
            row = self._minutes[-1]
            row[1 if status < 400 else 2 if status == 429 else 3 if status < 500 else 4] += 1
            if route in _IMAGE_ROUTES:
                self._generations.append((time.time(), round(seconds * 1000, 1), status))

    def traffic(self) -> list[dict[str, int]]:
        """Per-minute counts of the last hour, oldest first."""
        with self._lock:
            return [
                {
                    "minute": m,
                    "ok": ok,
                    "rate_limited": rl,
                    "client_errors": ce,
                    "server_errors": se,
                }
                for m, ok, rl, ce, se in self._minutes
            ]

    def generations(self) -> list[dict[str, Any]]:
        """Recent image requests through the gateway: ``{"at", "ms", "status"}``, newest first."""
        with self._lock:
            return [{"at": a, "ms": ms, "status": st} for a, ms, st in reversed(self._generations)]


class _ActivityMiddleware:
    def __init__(self, app: Any, activity: GatewayActivity) -> None:
        self.app = app
        self.activity = activity

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        seen = {"status": 500}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                seen["t"] = time.perf_counter() - start
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.activity.observe(
                scope.get("path", ""), seen["status"], seen.get("t", time.perf_counter() - start)
            )


async def _worker_status(gw: Any) -> dict[str, Any]:
    """``GET <image backend>/internal/status`` (2 s), or ``{"up": False, "error": words}``."""
    settings = gw.settings
    url = settings.backend_for("/images/generations") + "/internal/status"
    headers = {k: v.get_secret_value() for k, v in settings.additional_secret.items()}
    try:
        async with httpx.AsyncClient(timeout=2.0) as client:
            resp = await client.get(url, headers=headers)
        if resp.status_code != 200:
            return {"up": False, "error": f"the worker answered HTTP {resp.status_code}"}
        return {"up": True, **resp.json()}
    except (httpx.HTTPError, ValueError) as exc:
        return {"up": False, "error": f"the worker did not answer ({type(exc).__name__})"}


def _amounts(name: str, neuron: int | None) -> dict[str, Any]:
    if neuron is None:
        return {name: None, f"{name}_0g": None}
    return {name: str(neuron), f"{name}_0g": format_0g(neuron)}


def ops_snapshot(gw: Any) -> dict[str, Any]:
    """The database part of ``/ui/api/ops`` (blocking)."""
    settings = gw.settings
    users = queries.unsettled_by_user(gw.db)
    history = queries.settlements(gw.db, limit=100)
    batch_rows = [
        {
            "id": b.id,
            "user": b.user,
            **_amounts("amount", b.amount),
            **_amounts("paid", b.paid),
            "tx_hash": b.tx_hash,
            "status": b.status,
            "result": b.result,
            "requests": b.requests,
            "created_at": b.created_at,
        }
        for b in history
    ]
    total = sum(u.unsettled + u.settling for u in users)
    return {
        "provider": gw.provider,
        "service": {
            "service_type": settings.service_type,
            "model": settings.model,
            **_amounts("input_price", settings.input_price),
            **_amounts("output_price", settings.output_price),
            "settlement_interval": settings.settlement_interval,
        },
        **_amounts("unsettled_total", total),
        "unsettled": [
            {
                "user": u.user,
                **_amounts("unsettled", u.unsettled),
                **_amounts("settling", u.settling),
                "requests": u.requests,
                "oldest": u.oldest,
            }
            for u in users
        ],
        "settlements": batch_rows,
        "pending": [b for b in batch_rows if b["status"] == BatchStatus.PREPARED],
        "refused": [b for b in batch_rows if b["status"] == BatchStatus.REJECTED],
        "request_counts": queries.request_counts(gw.db),
        "settlement_counts": queries.settlement_counts(gw.db),
    }


def mount_ops(app: FastAPI, gw: Any) -> GatewayActivity:
    """Add the ops page (``/ui/``), its JSON (``/ui/api/ops``) and ``/metrics`` to the gateway app,
    and a middleware counting every answer.

    Args:
        app: the gateway app (:func:`broker.provider.app.create_app`). gw: its
            :class:`~broker.provider.gateway.Gateway`.

    Returns:
        The :class:`GatewayActivity` (also ``app.state.ops``).
    """
    activity = GatewayActivity()

    def require_admin(request: Request) -> None:
        key = admin_key(gw)
        if key is None:
            raise AdminKeyMissingError(
                f"the ops page and /metrics are off: set {ADMIN_KEY_ENV} "
                f"(or {ADMIN_KEY_FILE_ENV}) and restart the gateway"
            )
        if not key_matches(bearer_token(request.headers.get("authorization")), key):
            raise UIAuthError("wrong or missing admin key")

    @app.exception_handler(UIError)
    async def _ui_error(_req: Request, exc: UIError) -> JSONResponse:
        return error_json(exc)

    router = APIRouter()
    guarded = APIRouter(dependencies=[Depends(require_admin)])

    @router.get("/ui", include_in_schema=False)
    async def ops_root() -> Response:
        return RedirectResponse("/ui/", status_code=307)

    @router.get("/ui/", response_class=HTMLResponse, include_in_schema=False)
    async def ops_page(request: Request) -> HTMLResponse:
        return page(request, "ops.html", mode="ops")

    @router.get("/ui/api/config")
    async def ops_config() -> dict[str, Any]:
        return {
            "mode": "ops",
            "key_required": True,
            "provider": gw.provider,
            "enabled": admin_key(gw) is not None,
        }

    @guarded.get("/ui/api/ops")
    async def ops_data() -> dict[str, Any]:
        data = await run_in_threadpool(ops_snapshot, gw)
        data["worker"] = await _worker_status(gw)
        data["generations"] = activity.generations()
        data["traffic"] = activity.traffic()
        return data

    @guarded.get("/metrics")
    async def metrics() -> Response:
        def refresh() -> None:
            users = queries.unsettled_by_user(gw.db)
            activity.unsettled.set(sum(u.unsettled + u.settling for u in users))
            for status, n in queries.request_counts(gw.db).items():
                activity.rows.labels(status=status).set(n)
            for status, n in queries.settlement_counts(gw.db).items():
                activity.batches.labels(status=status).set(n)

        await run_in_threadpool(refresh)
        worker = await _worker_status(gw)
        activity.worker_up.set(1 if worker.get("up") else 0)
        activity.worker_loaded.set(1 if worker.get("loaded") else 0)
        activity.worker_queue.set(worker.get("queue_length") or 0)
        activity.worker_running.set(worker.get("running") or 0)
        return Response(generate_latest(activity.registry), media_type=CONTENT_TYPE_LATEST)

    router.include_router(guarded)
    mount_static(app)
    app.include_router(router)
    app.add_middleware(_ActivityMiddleware, activity=activity)
    app.state.ops = activity
    return activity
