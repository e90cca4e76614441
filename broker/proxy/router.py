"""The proxy's FastAPI routes. Handlers only pick the context and delegate to the ``serving_*``
modules; errors become OpenAI-shaped responses in :mod:`broker.proxy.app`."""

from __future__ import annotations

import base64
import logging

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from broker.asgi.keys import bearer_token, key_matches
from broker.inference.response_signature import ResponseBinding
from broker.proxy import (
    files,
    router_async,
    serving_audio,
    serving_chat,
    serving_images,
    serving_models,
)
from broker.proxy.account import account_snapshot
from broker.proxy.context import ProxyContext, read_json
from broker.proxy.errors import ProxyHTTPError
from broker.proxy.metrics import CONTENT_TYPE_LATEST
from broker.proxy.protocol import HealthResponse, VerifyRequest, VerifyResponse
from broker.proxy.readiness import ReadyResponse, readiness
from broker.proxy.service_routes import check_route
from broker.wire.signed_text import sha256_hex

__all__ = ["close_extras", "hot_chat", "require_api_key", "router"]

logger = logging.getLogger(__name__)


def _ctx(request: Request) -> ProxyContext:
    return request.app.state.proxy


def require_api_key(request: Request) -> None:
    """When ``api_key`` is set, require ``Authorization: Bearer <api_key>``.

    The scheme is compared case-insensitively; the key by :func:`broker.asgi.keys.key_matches`
    (constant time over SHA-256 digests: neither its content nor its length shows in the timing).

    Raises:
        ProxyHTTPError: 401 ``authentication_error`` / ``invalid_api_key``.
    """
    key = _ctx(request).settings.api_key
    if key is None:
        return
    given = bearer_token(request.headers.get("authorization"))
    if not key_matches(given, key.get_secret_value()):
        raise ProxyHTTPError(
            "Incorrect API key provided",
            status_code=401,
            type="authentication_error",
            code="invalid_api_key",
        )


router = APIRouter()
guarded = APIRouter(dependencies=[Depends(require_api_key)])


@router.get("/health", response_model=HealthResponse)
async def health(request: Request) -> HealthResponse:
    """Liveness and what is being served (no provider call, nothing billed)."""
    ctx = _ctx(request)
    return HealthResponse(
        provider=ctx.provider,
        service_url=ctx.service.url,
        model=ctx.service.model,
        service_type=ctx.service.service_type,
        verify=ctx.settings.verify,
    )


@router.get("/ready", response_model=ReadyResponse)
async def ready(request: Request) -> JSONResponse:
    """Readiness: chain, provider gateway, sub-account funded, auto-funding (200 when all are ok,
    else 503 naming the part that is down; :mod:`broker.proxy.readiness`)."""
    result = await readiness(_ctx(request))
    return JSONResponse(result.model_dump(), status_code=200 if result.status == "ready" else 503)


@guarded.get("/metrics")
async def metrics(request: Request) -> Response:
    """Prometheus exposition (balances refreshed from the chain on each scrape, within
    ``chain_timeout`` seconds; the last known values otherwise)."""
    ctx = _ctx(request)
    try:
        await run_in_threadpool(account_snapshot, ctx)
    except Exception as exc:  # noqa: BLE001 - metrics must render even when the node is down
        logger.warning("balance refresh for /metrics failed: %s", exc)
    return Response(ctx.metrics.render(), media_type=CONTENT_TYPE_LATEST)


@guarded.get("/v1/account")
async def account(request: Request) -> JSONResponse:
    """Ledger, sub-account, fees, auto-funding state, recent verification results; 200 within
    ``chain_timeout`` seconds even when the node hangs (``chain.ok`` false, ``chain.unavailable``
    naming the parts not read)."""
    snapshot = await run_in_threadpool(account_snapshot, _ctx(request))
    return JSONResponse(snapshot.model_dump(mode="json"))


@guarded.get("/v1/models")
async def models(request: Request) -> Response:
    """The provider's models in OpenAI's list shape."""
    return await serving_models.list_models(_ctx(request))


@guarded.post("/v1/chat/completions")
async def chat(request: Request) -> Response:
    """Chat completions (streaming passed through as it arrives). Served by :func:`hot_chat`
    through :class:`~broker.proxy.hot_routes.HotRoutes`; the route stays for the schema and for an
    app built without that layer."""
    return await hot_chat(request)


async def hot_chat(request: Request) -> Response:
    """``POST /v1/chat/completions`` with its API-key check, for
    :class:`~broker.proxy.hot_routes.HotRoutes` (no dependency solving).

    Raises:
        ProxyHTTPError: 401 bad API key, 404 route not offered by the service, and the handler's.
    """
    require_api_key(request)
    ctx = _ctx(request)
    check_route(ctx, "chat")
    return await serving_chat.chat_completions(ctx, request)


@guarded.post("/v1/images/generations")
async def images_generations(request: Request) -> Response:
    """Text-to-image."""
    check_route(_ctx(request), "images")
    return await serving_images.generate_image(_ctx(request), request)


@guarded.post("/v1/images/edits")
async def images_edits(request: Request) -> Response:
    """Image editing (multipart)."""
    check_route(_ctx(request), "image-edits")
    return await serving_images.edit_image(_ctx(request), request)


@guarded.post("/v1/async/images/generations")
async def async_images(request: Request) -> Response:
    """Queue a text-to-image job (202)."""
    check_route(_ctx(request), "images")
    ctx = _ctx(request)
    response = await serving_images.async_generate_image(ctx, request)
    return await router_async.decorate_submission(ctx, request, response)


@guarded.get("/v1/async/jobs/{job_id}")
async def async_job(job_id: str, request: Request) -> Response:
    """Poll an image job (``Retry-After`` passed through)."""
    check_route(_ctx(request), "images")
    ctx = _ctx(request)
    router_async.check_provider_address(ctx, request.query_params.get("provider_address"))
    polled = await files.link_files(ctx, request, await serving_images.get_job(ctx, job_id))
    return await router_async.decorate_poll(ctx, job_id, polled)


@guarded.get(files.FILES_ROUTE + "{name}")
async def file(name: str, request: Request) -> Response:
    """An image a ``url`` answer linked to (this user's, until ``media_ttl`` expires)."""
    return await files.get_file(_ctx(request), name)


@guarded.post("/v1/audio/transcriptions")
async def audio(request: Request) -> Response:
    """Speech-to-text (multipart)."""
    check_route(_ctx(request), "audio")
    return await serving_audio.transcriptions(_ctx(request), request)


def _verify_binding(body: VerifyRequest) -> ResponseBinding | None:
    """The :class:`ResponseBinding` of a ``/v1/verify`` body, or ``None`` (signature only).

    Raises:
        ProxyHTTPError: 400 for two forms of one body, bad base64, or a request without response.
    """

    def one(text: str | None, b64: str | None, digest: str | None, name: str) -> str | None:
        given = [v for v in (text, b64, digest) if v is not None]
        if len(given) > 1:
            raise ProxyHTTPError(
                f"give at most one of {name}, {name}_b64, {name}_sha256",
                status_code=400,
                type="invalid_request_error",
                code="invalid_binding",
                param=name,
            )
        if digest is not None:
            return digest.lower()
        if b64 is not None:
            try:
                return sha256_hex(base64.b64decode(b64, validate=True))
            except ValueError:
                raise ProxyHTTPError(
                    f"{name}_b64 is not base64",
                    status_code=400,
                    type="invalid_request_error",
                    code="invalid_binding",
                    param=f"{name}_b64",
                ) from None
        return None if text is None else sha256_hex(text.encode("utf-8", "surrogatepass"))

    response = one(body.response, body.response_b64, body.response_sha256, "response")
    request = one(body.request, body.request_b64, body.request_sha256, "request")
    if response is None and request is not None:
        raise ProxyHTTPError(
            "a request hash needs the response too (the response hash is never skipped)",
            status_code=400,
            type="invalid_request_error",
            code="invalid_binding",
            param="response",
        )
    return None if response is None else ResponseBinding(response, request)


@guarded.post("/v1/verify", response_model=VerifyResponse)
async def verify(request: Request) -> VerifyResponse:
    """Verify a response by its chat ID (``ZG-Res-Key`` or completion ``id``) even in mode off;
    bound to the response (and request) bytes or hashes when the body gives them."""
    ctx = _ctx(request)
    data = await read_json(request, 64 << 20)
    if not data.get("id"):
        raise ProxyHTTPError(
            "Missing id in request body",
            status_code=400,
            type="invalid_request_error",
            code="missing_id",
            param="id",
        )
    try:
        body = VerifyRequest.model_validate(data)
    except ValueError as exc:
        raise ProxyHTTPError(
            f"invalid verify request: {_first_error(exc)}",
            status_code=400,
            type="invalid_request_error",
            code="invalid_verify_request",
        ) from None
    binding = _verify_binding(body)
    from broker.proxy.verification import Verifier

    # a fresh verifier: re-verifying a chat id this proxy has seen is not a reuse
    verifier = Verifier(ctx.inference, ctx.provider, "warn", ctx.upstream.signatures, ctx.metrics)
    result = await verifier.verify(body.id, binding=binding)
    assert result is not None
    return VerifyResponse(
        isValid=result.verified,
        reason=result.reason.value,
        chat_id=result.chat_id,
        signer=result.signer,
        detail=result.detail,
        binding=result.binding,
    )


def _first_error(exc: ValueError) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        first = errors()[0]
        return f"{'.'.join(map(str, first.get('loc', ())))}: {first.get('msg', '')}"
    return "malformed body"


router.include_router(guarded)


async def close_extras(ctx: ProxyContext) -> None:
    """Stop what the routes started lazily (Pixazo watchers, serve's state store)."""
    from broker.proxy.pixazo.serving import stop_watchers

    await stop_watchers(ctx)
    store = ctx.extra.pop("state_store", None)
    if store is not None:
        store.close()
