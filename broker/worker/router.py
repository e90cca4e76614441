"""HTTP routes of the worker. The handlers only parse, delegate to
:class:`broker.worker.serving.ImageService` and shape responses; errors are mapped to HTTP in
:mod:`broker.worker.app`."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile

from broker.wire.job_id import is_valid_job_id
from broker.worker.body import SafeJSONRoute
from broker.worker.errors import InvalidImageRequestError, JobNotFoundError
from broker.worker.pipelines.performance import PerformanceReport
from broker.worker.protocol import (
    AsyncImageGenerationRequest,
    HealthResponse,
    ImageEditForm,
    ImageGenerationRequest,
    ImageJobCreated,
    ImagesResponse,
    ModelCard,
    ModelList,
    PerformanceStatus,
    UnloadResponse,
    WorkerStatusResponse,
)
from broker.worker.serving import ImageService

__all__ = ["router"]

router = APIRouter(route_class=SafeJSONRoute)
_STARTED = int(time.time())


def _service(request: Request) -> ImageService:
    return request.app.state.image_service


def _status(service: ImageService) -> WorkerStatusResponse:
    snapshot = dict(service.engine.status().__dict__)
    snapshot["status"] = snapshot.pop("state")
    snapshot["performance"] = _performance(snapshot["performance"])
    return WorkerStatusResponse(**snapshot, jobs=len(service.jobs))


def _performance(report: PerformanceReport | None) -> PerformanceStatus | None:
    return None if report is None else PerformanceStatus(**report.as_dict())


@router.get("/health", response_model=HealthResponse)
async def health(request: Request) -> HealthResponse:
    """Liveness and load status: ``{"status": "ok", "model_loaded": bool, "model", "state",
    "load_error"}`` (never loads the model)."""
    service = _service(request)
    snapshot = service.engine.status()
    return HealthResponse(
        model_loaded=snapshot.loaded,
        model=service.settings.model_name,
        state=snapshot.state,
        load_error=snapshot.load_error,
        safety_checker=service.engine.safety_checker,
        performance=_performance(snapshot.performance),
    )


@router.get("/v1/models", response_model=ModelList)
async def list_models(request: Request) -> ModelList:
    """The one served model, in the ``{"object": "list", "data": [...]}`` shape, with its
    capabilities (text-to-image, image-to-image) and limits."""
    service = _service(request)
    limits = service.engine.limits
    return ModelList(
        data=[
            ModelCard(
                id=service.settings.model_name,
                created=_STARTED,
                limits={
                    "size_multiple": limits.size_multiple,
                    "min_side": limits.min_side,
                    "max_side": limits.max_side,
                    "default_size": f"{limits.default_size[0]}x{limits.default_size[1]}",
                    "default_steps": limits.default_steps,
                    "default_guidance_scale": limits.default_guidance,
                    "default_edit_guidance_scale": limits.default_edit_guidance,
                    "max_sequence_length": limits.max_sequence_length,
                    "safety_checker": service.engine.safety_checker,
                    "max_n": service.settings.max_n,
                },
            )
        ]
    )


@router.get("/v1/internal/status", response_model=WorkerStatusResponse)
async def internal_status(request: Request) -> WorkerStatusResponse:
    """``{"status": "idle" | "loading" | "generating", "loaded", "load_error", ...}`` and the
    queue length."""
    return _status(_service(request))


# GET too, as the Z-Image Vision server answers it; one OpenAPI operation id per method
@router.post("/v1/internal/unload", response_model=UnloadResponse, operation_id="internal_unload")
@router.get(
    "/v1/internal/unload", response_model=UnloadResponse, operation_id="internal_unload_get"
)
async def internal_unload(request: Request) -> UnloadResponse:
    """Unload the model now (waits for a running job); the next request loads it again."""
    service = _service(request)
    unloaded = await asyncio.to_thread(service.engine.unload)
    return UnloadResponse(unloaded=unloaded, status=_status(service))


@router.post(
    "/v1/images/generations", response_model=ImagesResponse, response_model_exclude_none=True
)
async def create_image(body: ImageGenerationRequest, request: Request) -> ImagesResponse:
    """Text-to-image (OpenAI ``images.generate``); waits for the image(s)."""
    service = _service(request)
    task = service.generation_task(body)
    return await service.run(task, service.output_options(body, str(request.base_url)))


@router.post("/v1/images/edits", response_model=ImagesResponse, response_model_exclude_none=True)
async def edit_image(request: Request) -> ImagesResponse:
    """Image editing (OpenAI ``images.edit``, multipart): image-to-image, or inpainting with a
    mask."""
    service = _service(request)
    form, images, mask = await _read_edit_form(request)
    task = await asyncio.to_thread(service.edit_task, form, images, mask)
    return await service.run(task, service.output_options(form, str(request.base_url)))


@router.post("/v1/async/images/generations", status_code=202, response_model=ImageJobCreated)
async def create_image_job(body: AsyncImageGenerationRequest, request: Request) -> JSONResponse:
    """Queue a text-to-image job; 202 with the job id, ``Location`` and ``Retry-After``."""
    service = _service(request)
    if body.webhook_url:
        service.notifier.check_url(str(body.webhook_url))
    task = service.generation_task(body)
    options = service.output_options(body, str(request.base_url))
    job = service.submit_job(task, options, str(body.webhook_url) if body.webhook_url else None)
    return _job_created(service, job)


@router.post("/v1/async/images/edits", status_code=202, response_model=ImageJobCreated)
async def create_edit_job(request: Request) -> JSONResponse:
    """Queue an edit job (multipart, as ``/v1/images/edits`` plus ``webhook_url``); 202."""
    service = _service(request)
    form, images, mask = await _read_edit_form(request)
    if form.webhook_url:
        service.notifier.check_url(str(form.webhook_url))
    task = await asyncio.to_thread(service.edit_task, form, images, mask)
    options = service.output_options(form, str(request.base_url))
    job = service.submit_job(task, options, str(form.webhook_url) if form.webhook_url else None)
    return _job_created(service, job)


@router.get("/v1/async/jobs/{job_id}")
async def get_job(job_id: str, request: Request) -> JSONResponse:
    """Job status; when completed ``data`` holds the images response. ``Retry-After`` (seconds)
    while pending or running; 404 for unknown or expired ids."""
    service = _service(request)
    if not is_valid_job_id(job_id):
        raise JobNotFoundError("no image job with this id (malformed id)")
    job = service.jobs.get(job_id)
    headers = {} if job.done else {"Retry-After": str(service.engine.retry_after(1))}
    return JSONResponse(job.to_dict(), headers=headers)


@router.get("/v1/images/files/{file_id}")
async def get_image_file(file_id: str, request: Request) -> Response:
    """An image produced for a ``url`` response, until its TTL expires (then 404)."""
    stored = _service(request).files.get(file_id)
    if stored is None:
        raise JobNotFoundError(f"no image file {file_id!r} (unknown or expired)")
    return Response(stored.data, media_type=stored.media_type)


def _job_created(service: ImageService, job) -> JSONResponse:
    # Always "pending" at creation (the job may already have started on the executor thread).
    body = ImageJobCreated(id=job.id, jobId=job.id, status="pending", created=job.created)
    return JSONResponse(
        body.model_dump(),
        status_code=202,
        headers={
            "Location": f"/v1/async/jobs/{job.id}",
            "Retry-After": str(service.engine.retry_after()),
        },
    )


async def _read_edit_form(request: Request) -> tuple[ImageEditForm, list[bytes], bytes | None]:
    """Parse the multipart edit form: text fields validated by :class:`ImageEditForm`, files
    ``image`` / ``image[]`` and ``mask`` read up to ``max_upload_bytes`` each."""
    limit = _service(request).settings.max_upload_bytes
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise InvalidImageRequestError(
            "images/edits expects multipart/form-data", param=None, code="invalid_content_type"
        )
    form = await request.form()
    fields: dict[str, Any] = {}
    images: list[bytes] = []
    mask: bytes | None = None
    for key, value in form.multi_items():
        if key in ("image", "image[]"):
            images.append(await _read_upload(key.rstrip("[]"), value, limit))
        elif key == "mask":
            mask = await _read_upload("mask", value, limit)
        elif isinstance(value, str):
            if key in fields:  # which copy counts differs between parsers (n: billed vs made)
                raise InvalidImageRequestError(f"{key} must be given at most once", param=key)
            fields[key] = value
    return ImageEditForm.model_validate(fields), images, mask


async def _read_upload(param: str, value: Any, limit: int) -> bytes:
    if not isinstance(value, UploadFile):
        raise InvalidImageRequestError(f"{param} must be a file upload", param=param)
    data = await value.read(limit + 1)
    if len(data) > limit:
        raise InvalidImageRequestError(
            f"{param} is larger than {limit} bytes", param=param, code="file_too_large"
        )
    return data
