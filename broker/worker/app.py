"""FastAPI application factory of the Z-Image worker and the mapping of errors to HTTP.

Errors use the OpenAI shape ``{"error": {"message", "type", "param", "code"}}``: 400
``invalid_request_error`` naming the field, 404 for unknown jobs/files, 429 with ``Retry-After``
when the queue is full, 500 ``model_load_failed`` naming the cause when the model cannot be loaded
(the next request retries the load, as the Z-Image Vision server does), 500 when generation fails.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from broker.asgi.guard import MULTIPART_TYPES, LocalGuard, bound_host_names
from broker.worker.engine import ImageEngine
from broker.worker.errors import (
    GenerationError,
    InvalidImageRequestError,
    JobNotFoundError,
    ModelLoadError,
    QueueFullError,
    WorkerDependencyError,
    WorkerError,
)
from broker.worker.images import FileStore
from broker.worker.jobs import JobRegistry, WebhookNotifier
from broker.worker.router import router
from broker.worker.serving import ImageService
from broker.worker.settings import WorkerSettings

__all__ = ["create_app", "error_body"]

logger = logging.getLogger(__name__)


def error_body(
    message: str, type_: str, *, param: str | None = None, code: str | None = None
) -> dict:
    """``{"error": {"message", "type", "param", "code"}}`` (OpenAI error object)."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def create_app(
    settings: WorkerSettings | None = None, *, engine: ImageEngine | None = None
) -> FastAPI:
    """Build the worker app.

    Args:
        settings: worker settings (default: from ``ZG_WORKER_*`` environment variables).
        engine: an existing :class:`ImageEngine` (default: one built from ``settings``; nothing is
            loaded until the first image request).

    Returns:
        The FastAPI app; ``app.state.image_service`` is the :class:`ImageService` (its ``engine``,
        ``jobs`` and ``files`` are reachable from there). The engine is shut down with the app.
    """
    settings = settings or WorkerSettings()
    engine = engine or ImageEngine(
        settings.model,
        settings.device,
        queue_size=settings.queue_size,
        idle_unload_seconds=settings.idle_unload_seconds,
        safety_checker=settings.safety_checker,
        performance=settings.performance_options(),
    )
    jobs = JobRegistry(ttl_seconds=settings.job_ttl_seconds)
    files = FileStore(ttl_seconds=settings.file_ttl_seconds)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with httpx.AsyncClient(follow_redirects=False) as client:
            notifier = WebhookNotifier(
                client,
                attempts=settings.webhook_attempts,
                timeout_seconds=settings.webhook_timeout_seconds,
                allow_private=settings.webhook_allow_private,
            )
            service = ImageService(settings, engine, jobs, files, notifier)
            app.state.image_service = service
            try:
                yield
            finally:
                await service.aclose()
                engine.shutdown()

    app = FastAPI(title="0g-broker Z-Image worker", lifespan=lifespan)
    app.include_router(router)
    _install_error_handlers(app)
    # web pages may not use the worker (Host, Origin, Sec-Fetch-Site, Content-Type checks)
    app.add_middleware(
        LocalGuard,
        allowed_hosts=[*settings.allowed_hosts, *bound_host_names(settings.host)],
        allowed_origins=settings.allowed_origins,
        content_types={p: MULTIPART_TYPES for p in ("/v1/images/edits", "/v1/async/images/edits")},
        hosts_hint="; list it in ZG_WORKER_ALLOWED_HOSTS",
        origins_hint="; list it in ZG_WORKER_ALLOWED_ORIGINS",
    )
    return app


def _first_error_param(errors: list[dict]) -> tuple[str | None, str]:
    if not errors:
        return None, "invalid request"
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "path")]
    param = ".".join(loc) or None
    message = first.get("msg", "invalid value")
    return param, f"{param}: {message}" if param else message


def _validation_response(errors: list) -> JSONResponse:
    """HTTP 400 ``invalid_request_error`` for pydantic errors (code ``missing_field`` when the first
    error is a missing field, else ``invalid_value``)."""
    param, message = _first_error_param(errors)
    code = "missing_field" if errors and errors[0].get("type") == "missing" else "invalid_value"
    return JSONResponse(
        error_body(message, "invalid_request_error", param=param, code=code), status_code=400
    )


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _request_validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        if errors and errors[0].get("type") == "json_invalid":
            reason = str((errors[0].get("ctx") or {}).get("error") or "")
            message = (
                reason if reason.startswith("request body") else ("request body is not valid JSON")
            )
            return JSONResponse(
                error_body(message, "invalid_request_error", code="invalid_json"),
                status_code=400,
            )
        return _validation_response(errors)

    @app.exception_handler(ValidationError)
    async def _validation(_: Request, exc: ValidationError) -> JSONResponse:
        return _validation_response(list(exc.errors()))

    @app.exception_handler(InvalidImageRequestError)
    async def _invalid(_: Request, exc: InvalidImageRequestError) -> JSONResponse:
        return JSONResponse(
            error_body(str(exc), "invalid_request_error", param=exc.param, code=exc.code),
            status_code=400,
        )

    @app.exception_handler(QueueFullError)
    async def _queue_full(_: Request, exc: QueueFullError) -> JSONResponse:
        return JSONResponse(
            error_body(str(exc), "rate_limit_error", code="queue_full"),
            status_code=429,
            headers={"Retry-After": str(exc.retry_after)},
        )

    @app.exception_handler(JobNotFoundError)
    async def _not_found(_: Request, exc: JobNotFoundError) -> JSONResponse:
        return JSONResponse(
            error_body(str(exc), "invalid_request_error", code="not_found"), status_code=404
        )

    @app.exception_handler(WorkerError)
    async def _worker_error(_: Request, exc: WorkerError) -> JSONResponse:
        message = str(exc)
        if isinstance(exc, (ModelLoadError, WorkerDependencyError)):
            code = "model_load_failed"
            message = f"Model loading failed: {message}. The next request retries the load."
        elif isinstance(exc, GenerationError):
            code = "generation_failed"
        else:
            code = "worker_error"
        return JSONResponse(error_body(message, "server_error", code=code), status_code=500)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        type_ = "invalid_request_error" if exc.status_code < 500 else "server_error"
        return JSONResponse(
            error_body(str(exc.detail), type_), status_code=exc.status_code, headers=exc.headers
        )
