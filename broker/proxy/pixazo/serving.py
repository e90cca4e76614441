"""The Pixazo-compatible endpoint's logic: submission, status, stored images, webhooks.

Flow: a submission is validated (:mod:`.protocol`), turned into an async image job on the provider
(``POST {url}/v1/async/images/generations`` with ``response_format: b64_json``), whose 202 is
verified as any response and recorded for billing (the fee store's async-job record: billed
``num_images × outputPrice`` once, when a poll first sees the job completed, as the gateway bills
it, provider-gateway.md B9). The request is kept in
:class:`~broker.proxy.state_store.ServeStateStore` (it survives a ``serve`` restart). A status poll
asks the provider about the job until it is final:

============================= ===================================================
provider job                  Pixazo status
============================= ===================================================
``pending``                   ``QUEUED``
``running``                   ``PROCESSING``
``completed``                 ``COMPLETED`` (images stored, ``output.media_url``)
``failed`` / no image         ``FAILED`` (the provider's failure; not billed)
unknown to the provider (404) ``ERROR`` (never charged)
============================= ===================================================

A provider that cannot be reached leaves the status as it was (the next poll asks again). With
``X-Webhook-URL`` a watcher task polls until the request is final and POSTs the status body once;
a request whose watcher was lost (``serve`` restarted) is delivered at its next status poll.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import secrets
import socket
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx
from fastapi import Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from broker.proxy.context import FEE_HEADER, complete_response, read_json
from broker.proxy.errors import ProxyHTTPError
from broker.proxy.files import MEDIA_HEADERS
from broker.proxy.pixazo.errors import PixazoHTTPError
from broker.proxy.pixazo.protocol import (
    PixazoBaseRequest,
    PixazoOutput,
    PixazoStatusResponse,
    PixazoSubmitResponse,
    PixazoTurboRequest,
    image_size_pixels,
)
from broker.proxy.router_async import state_store
from broker.proxy.timefmt import iso_utc
from broker.proxy.upstream import json_dumps
from broker.proxy.verification import REASON_HEADER, VERIFIED_HEADER
from broker.wire.job_id import is_valid_job_id
from broker.wire.json_body import loads_json_or_none
from broker.wire.webhook import WebhookURLError, check_webhook_address, check_webhook_url

if TYPE_CHECKING:
    from broker.proxy.context import ProxyContext
    from broker.proxy.state_store import PixazoRecord

__all__ = [
    "MODEL_IDS",
    "deliver_webhook",
    "get_media",
    "get_status",
    "stop_watchers",
    "submit",
]

logger = logging.getLogger(__name__)

#: Pixazo model id → its request model.
MODEL_IDS = {"z-image-turbo-834": PixazoTurboRequest, "z-image-base": PixazoBaseRequest}
_MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}
_WEBHOOK_TIMEOUT_S = 5.0
_WATCH_LIMIT_S = 3600.0


def _model_available(ctx: ProxyContext, model_id: str) -> None:
    """A text-to-image provider serves both variants unless its model names the other one
    (``turbo`` / ``base`` in the on-chain model name)."""
    other = "base" if "turbo" in model_id else "turbo"
    if ctx.service.service_type != "text-to-image" or other in ctx.service.model.lower():
        raise PixazoHTTPError(
            400, f"Model '{model_id}' not found or is disabled", error="Model not found"
        )


def _validation_message(exc: ValidationError) -> str:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first.get("loc", ())) or "body"
    return f"{loc}: {first.get('msg', 'invalid value')}"[:500]


def _forwarded_body(ctx: ProxyContext, req: PixazoTurboRequest | PixazoBaseRequest) -> bytes:
    width, height = image_size_pixels(req.image_size, ctx.settings.pixazo_long_side)
    body: dict[str, Any] = {
        "model": ctx.service.model,
        "prompt": req.prompt,
        "n": req.num_images,
        "size": f"{width}x{height}",
        "response_format": "b64_json",
        "output_format": req.output_format,
        "enable_safety_checker": req.enable_safety_checker,
    }
    for name in ("num_inference_steps", "guidance_scale", "seed", "negative_prompt"):
        value = getattr(req, name)
        if value is not None:
            body[name] = value
    return json_dumps(body)


def _job_id(raw: bytes) -> str | None:
    body = loads_json_or_none(raw)
    job_id = (body.get("jobId") or body.get("id")) if isinstance(body, dict) else None
    return job_id if is_valid_job_id(job_id) else None


def _base_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


async def submit(ctx: ProxyContext, request: Request, model_id: str) -> Response:
    """``POST /<model>/v1/<model>-request``: queue one generation; 202
    :class:`PixazoSubmitResponse` with ``X-0G-Verified`` (the provider's signature of the
    submission) and ``X-0G-Fee: 0`` (billed when it completes).

    Raises:
        PixazoHTTPError: 400 bad field / ``Model not found`` / refused webhook URL; 502 when the
            provider accepted the job without a job id. ProxyHTTPError: the provider's errors
            (402 insufficient balance, 429, 5xx), rendered in Pixazo's shape by the app.
    """
    _model_available(ctx, model_id)
    data = await read_json(request, ctx.settings.max_body_bytes)
    try:
        req = MODEL_IDS[model_id].model_validate(data)
    except ValidationError as exc:
        raise PixazoHTTPError(400, _validation_message(exc)) from None
    webhook = request.headers.get("x-webhook-url")
    if webhook is not None:
        try:
            check_webhook_url(webhook, allow_private=ctx.settings.webhook_allow_private)
        except WebhookURLError as exc:
            raise PixazoHTTPError(400, f"X-Webhook-URL refused: {exc}") from None
    body = _forwarded_body(ctx, req)
    response = await ctx.upstream.send(
        "POST",
        "/v1/async/images/generations",
        proxy=False,
        family="images",
        content=body,
        content_type="application/json",
        route="pixazo/submit",
    )
    accepted: dict[str, str] = {}

    async def remember(_status: int, raw: bytes) -> None:
        job_id = _job_id(raw)
        if job_id is not None:
            accepted["job_id"] = job_id
            await ctx.billing.record_async_job(job_id, {"n": req.num_images})

    # the submission's signature is checked bound to the bytes (enforce may refuse: then the job
    # is recorded as disputed, as on the OpenAI async route)
    answer_202 = await complete_response(
        ctx, response, None, on_body=remember, request_body=body, refused_bill=lambda _raw: body
    )
    job_id = accepted.get("job_id")
    if job_id is None:
        raise PixazoHTTPError(
            502, "the provider accepted the request without a job id; nothing was billed locally"
        )
    chat_id = answer_202.headers.get("zg-res-key")
    request_id = f"{model_id}_{uuid.uuid4()}"
    options = {
        "output_format": req.output_format,
        "num_images": req.num_images,
        "enable_safety_checker": req.enable_safety_checker,
        "zg_res_key": chat_id,
        "base_url": _base_url(request),
    }
    await run_in_threadpool(
        state_store(ctx).create_pixazo,
        ctx.inference.address,
        ctx.provider,
        request_id,
        model_id,
        job_id,
        "QUEUED",
        webhook_url=webhook,
        options=options,
    )
    if webhook is not None:
        _start_watcher(ctx, request_id)
    answer = PixazoSubmitResponse(
        request_id=request_id, polling_url=f"{_base_url(request)}/v2/requests/status/{request_id}"
    )
    headers = {
        k: answer_202.headers[k]
        for k in (VERIFIED_HEADER, REASON_HEADER, FEE_HEADER)
        if k in answer_202.headers
    }
    return JSONResponse(answer.model_dump(), status_code=202, headers=headers)


# -- status ------------------------------------------------------------------------------------


def _status_body(record: PixazoRecord) -> dict[str, Any]:
    final = record.final_body or {}
    body = PixazoStatusResponse(
        request_id=record.request_id,
        status=record.status,
        model_id=record.model_id,
        error=record.error,
        output=final.get("output"),
        created_at=iso_utc(record.created_at),
        updated_at=iso_utc(record.updated_at),
        completed_at=iso_utc(record.completed_at) if record.completed_at else None,
        safety_checker=final.get("safety_checker"),
    )
    out = body.model_dump(mode="json")
    if out["output"] is not None and out["output"].get("has_nsfw_concepts") is None:
        out["output"].pop("has_nsfw_concepts", None)  # no check reported: no field
    if out["safety_checker"] is None:
        out.pop("safety_checker")
    return out


def _images_and_flags(result: Any) -> tuple[list[bytes | None], list[bool | None]] | None:
    """The images of a completed job (``None`` for one the provider's safety checker withheld:
    no bytes, ``has_nsfw_concepts: true``) and the per-image verdicts (``None``: unchecked); the
    per-item ``has_nsfw_concepts`` of our worker or a top-level list (diffusers' form). ``None``
    when the result has no usable image list."""
    items = result.get("data") if isinstance(result, dict) else None
    if not isinstance(items, list) or not items:
        return None
    images: list[bytes | None] = []
    flags: list[bool | None] = []
    for item in items:
        if not isinstance(item, dict):
            return None
        flag = item.get("has_nsfw_concepts")
        flags.append(flag if isinstance(flag, bool) else None)
        b64 = item.get("b64_json")
        if b64 is None and flag is True:
            images.append(None)  # withheld by the checker
            continue
        if not isinstance(b64, str):
            return None
        try:
            images.append(base64.b64decode(b64, validate=True))
        except (binascii.Error, ValueError):
            return None
    top = result.get("has_nsfw_concepts")
    if isinstance(top, list) and len(top) == len(items) and all(isinstance(f, bool) for f in top):
        flags = list(top)
    return images, flags


def _safety(
    record: PixazoRecord, result: dict[str, Any], flags: list[bool | None]
) -> tuple[dict[str, Any] | None, list[bool] | None]:
    """``(safety_checker status, has_nsfw_concepts)``: a check ran only when the provider says so
    (``safety_checked: true``) or gave a verdict for every image; never pretended."""
    requested = bool(record.options.get("enable_safety_checker"))
    ran = result.get("safety_checked") is True or (
        bool(flags) and all(f is not None for f in flags)
    )
    if ran:
        return {"requested": requested, "ran": True}, [bool(f) for f in flags]
    if not requested:
        return None, None
    return (
        {
            "requested": True,
            "ran": False,
            "detail": "the provider's answer carries no has_nsfw_concepts: no safety check ran",
        },
        None,
    )


async def _complete(
    ctx: ProxyContext, record: PixazoRecord, job: dict[str, Any]
) -> PixazoRecord | None:
    store = state_store(ctx)
    result = job.get("data")
    decoded = _images_and_flags(result)
    if decoded is None:
        return await run_in_threadpool(
            store.update_pixazo,
            record.request_id,
            status="FAILED",
            error="the provider's completed job carries no decodable image",
            final_body={},
        )
    images, flags = decoded
    fmt = record.options.get("output_format", "png")
    mime = _MIME.get(fmt, "application/octet-stream")
    base = record.options.get("base_url", "")
    urls = []
    for data in images:
        if data is None:  # withheld by the provider's safety checker: no URL
            continue
        media_id = secrets.token_urlsafe(16)
        await run_in_threadpool(
            store.put_media,
            ctx.inference.address,
            record.request_id,
            media_id,
            mime,
            data,
            ctx.settings.media_ttl,
        )
        urls.append(f"{base}/v2/media/{media_id}.{fmt}")
    safety, verdicts = _safety(record, result, flags)
    output = PixazoOutput(media_url=urls, media_type=mime, has_nsfw_concepts=verdicts)
    final = {"output": output.model_dump(mode="json", exclude_none=True), "safety_checker": safety}
    return await run_in_threadpool(
        store.update_pixazo, record.request_id, status="COMPLETED", final_body=final
    )


async def _refresh(ctx: ProxyContext, record: PixazoRecord) -> PixazoRecord:
    """Ask the provider about a request that is not final; returns the record after it."""
    if record.final_body is not None or record.job_id is None:
        return record
    store = state_store(ctx)
    try:
        response = await ctx.upstream.send(
            "GET", f"/v1/async/jobs/{record.job_id}", proxy=False, route="pixazo/status"
        )
        raw = await ctx.upstream.read(response)
    except ProxyHTTPError as exc:
        logger.info("status of %s: the provider could not be asked: %s", record.request_id, exc)
        return record
    job = loads_json_or_none(raw)
    await ctx.billing.observe_async_job(record.job_id, response.status_code, job)
    updated: PixazoRecord | None = None
    if response.status_code == 404:
        updated = await run_in_threadpool(
            store.update_pixazo,
            record.request_id,
            status="ERROR",
            error="the provider no longer knows this job; it is not charged",
            final_body={},
        )
    elif response.status_code == 200 and isinstance(job, dict):
        status = job.get("status")
        if status == "pending":
            updated = await run_in_threadpool(
                store.update_pixazo, record.request_id, status="QUEUED"
            )
        elif status == "running":
            updated = await run_in_threadpool(
                store.update_pixazo, record.request_id, status="PROCESSING"
            )
        elif status == "failed":
            err = job.get("error")
            message = err.get("message") if isinstance(err, dict) else err
            updated = await run_in_threadpool(
                store.update_pixazo,
                record.request_id,
                status="FAILED",
                error=str(message or "the provider reported the job failed")[:2000],
                final_body={},
            )
        elif status == "completed":
            updated = await _complete(ctx, record, job)
    return updated or record


async def get_status(ctx: ProxyContext, request_id: str) -> JSONResponse:
    """``GET /v2/requests/status/{request_id}``: the request's status (asking the provider while
    it is not final); a final status with an undelivered webhook is delivered now.

    Raises:
        PixazoHTTPError: 404 for an id this user never submitted.
    """
    store = state_store(ctx)
    record = None
    if 0 < len(request_id) <= 120:
        record = await run_in_threadpool(store.get_pixazo, ctx.inference.address, request_id)
    if record is None or record.provider != ctx.provider.lower():
        raise PixazoHTTPError(404, f"request '{request_id[:120]}' not found")
    record = await _refresh(ctx, record)
    if (
        record.final_body is not None
        and record.webhook_url
        and not record.webhook_delivered
        and record.request_id not in _watchers(ctx)
    ):
        _start_watcher(ctx, record.request_id)
    return JSONResponse(_status_body(record))


async def get_media(ctx: ProxyContext, name: str) -> Response:
    """``GET /v2/media/{id}.{ext}``: a stored image of this user (404 once expired)."""
    media_id = name.rsplit(".", 1)[0]
    item = None
    if 0 < len(media_id) <= 64:
        item = await run_in_threadpool(state_store(ctx).get_media, ctx.inference.address, media_id)
    if item is None:
        raise PixazoHTTPError(404, "media not found (unknown or expired)")
    return Response(
        item.data,
        media_type=item.content_type,
        headers={"Cache-Control": "private, max-age=3600", **MEDIA_HEADERS},
    )


# -- webhooks ----------------------------------------------------------------------------------


async def deliver_webhook(
    url: str,
    body: dict[str, Any],
    *,
    allow_private: bool = False,
    client: httpx.AsyncClient | None = None,
) -> bool:
    """POST ``body`` (JSON) to ``url``: the URL rule of :mod:`broker.wire.webhook` again, every
    address the host resolves to checked now, no redirects, a 5 s timeout.

    Returns:
        True when the receiver answered 2xx.
    """
    try:
        check_webhook_url(url, allow_private=allow_private)
        parts = urlsplit(url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = await asyncio.get_running_loop().getaddrinfo(
            parts.hostname, port, type=socket.SOCK_STREAM
        )
        for info in infos:
            check_webhook_address(info[4][0], allow_private=allow_private)
    except (WebhookURLError, OSError) as exc:
        logger.warning("webhook not delivered: %s", exc)
        return False
    own = client is None
    client = client or httpx.AsyncClient(timeout=_WEBHOOK_TIMEOUT_S, follow_redirects=False)
    try:
        response = await client.post(url, json=body, timeout=_WEBHOOK_TIMEOUT_S)
        return 200 <= response.status_code < 300
    except httpx.HTTPError as exc:
        logger.warning("webhook delivery failed: %s", type(exc).__name__)
        return False
    finally:
        if own:
            await client.aclose()


def _watchers(ctx: ProxyContext) -> dict[str, asyncio.Task]:
    return ctx.extra.setdefault("pixazo_watchers", {})


def _start_watcher(ctx: ProxyContext, request_id: str) -> None:
    tasks = _watchers(ctx)
    if request_id in tasks:
        return
    task = asyncio.get_running_loop().create_task(_watch(ctx, request_id))
    tasks[request_id] = task
    task.add_done_callback(lambda _t: tasks.pop(request_id, None))


async def _watch(ctx: ProxyContext, request_id: str) -> None:
    """Poll until final, then deliver the webhook once (3 tries, 1 s and 2 s apart)."""
    store = state_store(ctx)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + _WATCH_LIMIT_S
    delay = 0.5
    try:
        while True:
            record = await run_in_threadpool(store.get_pixazo, ctx.inference.address, request_id)
            if record is None:
                return
            record = await _refresh(ctx, record)
            if record.final_body is not None:
                break
            if loop.time() > deadline:
                logger.warning(
                    "webhook of %s: the job did not finish within %g s", request_id, _WATCH_LIMIT_S
                )
                return
            await asyncio.sleep(delay)
            delay = min(delay * 1.5, 5.0)
        if not record.webhook_url or not await run_in_threadpool(
            store.mark_webhook_delivered, request_id
        ):
            return
        body = _status_body(record)
        for pause in (1.0, 2.0, None):
            if await deliver_webhook(
                record.webhook_url, body, allow_private=ctx.settings.webhook_allow_private
            ):
                return
            if pause is not None:
                await asyncio.sleep(pause)
    except asyncio.CancelledError:
        raise
    except Exception:  # a watcher must never take the server down
        logger.exception("webhook watcher of %s failed", request_id)


async def stop_watchers(ctx: ProxyContext) -> None:
    """Cancel the running webhook watchers (at shutdown; undelivered webhooks are delivered at the
    request's next status poll after a restart)."""
    tasks = list(_watchers(ctx).values())
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
