"""The gateway's routes (``provider-gateway.md`` B2–B8). Handlers take their checks as
dependencies (:mod:`broker.provider.dependencies`) and delegate billed requests to
:class:`broker.provider.billed.BilledRequest`; refusals are :class:`GatewayHTTPError`, rendered as
``{"error": ...}`` by :mod:`broker.provider.app`.

Three groups, registered in this order (the catch-all last):

* ``public``: ``/health`` (no limits);
* ``limited`` (per-IP bucket first): quote, models, unsettled fee, response signature, image
  files, async job create and poll;
* ``proxied``: ``/v1/proxy/{path}``, the billable routes and the free ``/attestation`` ones; the
  route is checked before any limit is spent.
"""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from broker.provider.billed import respond_billed
from broker.provider.dependencies import (
    AuthenticatedUser,
    HeldSlot,
    JobId,
    ProxyRoute,
    RequestBody,
    Runtime,
    ip_limit,
)
from broker.provider.errors import ForbiddenError, GatewayHTTPError
from broker.provider.files import FILES_PATH
from broker.provider.forward import BILLABLE_ROUTES, forward_headers, response_headers
from broker.provider.protocol import (
    HealthResponse,
    ModelCard,
    ModelList,
    SignatureResponse,
    UnsettledFeeResponse,
)
from broker.provider.runtime import BackendAnswer, GatewayRuntime, json_or_none

__all__ = ["ROUTERS"]

public = APIRouter()
limited = APIRouter(dependencies=[Depends(ip_limit)])
proxied = APIRouter()


async def _backend_get(rt: GatewayRuntime, url: str, what: str) -> BackendAnswer:
    """:meth:`GatewayRuntime.backend_get`, an unreachable backend answered 502 ``<what>: ...``."""
    try:
        return await rt.backend_get(url)
    except Exception as exc:  # noqa: BLE001 - any transport failure is the backend's
        raise GatewayHTTPError(
            f"{what}: backend unreachable ({type(exc).__name__})", status_code=502
        ) from None


# ---------------------------------------------------------------------------------- free routes


@public.get("/health")
async def health(rt: Runtime) -> dict:
    """Liveness and the provider address."""
    return HealthResponse(provider=rt.gw.provider).model_dump()


@limited.get("/v1/quote")
async def quote(rt: Runtime) -> Response:
    """The TEE quote (or the no-TEE report) of the signer (B8)."""
    return Response(json.dumps(rt.gw.signer.quote()), media_type="application/json")


@limited.get("/v1/models")
async def models(rt: Runtime) -> dict:
    """The one model served, with its prices in neuron (D13)."""
    settings = rt.settings
    card = ModelCard(
        id=settings.model,
        owned_by=rt.gw.provider,
        service_type=settings.service_type,
        input_price=str(settings.input_price),
        output_price=str(settings.output_price),
        **settings.model_info,
    )
    return ModelList(data=[card]).model_dump()


@limited.get("/v1/user/{address}/unsettledfee")
async def unsettled_fee(
    address: str,
    user: AuthenticatedUser,
    rt: Runtime,
) -> dict:
    """The caller's own unsettled fee in neuron (B9); another address is refused (403)."""
    if user.lower() != address.lower():
        raise ForbiddenError("you can only query your own unsettled fee")
    fee = await run_in_threadpool(rt.gw.ledger.unsettled_fee, user)
    return UnsettledFeeResponse(userAddress=address, unsettledFee=str(fee)).model_dump()


@limited.get("/v1/proxy/signature/{chat_id}")
async def signature(chat_id: str, rt: Runtime) -> dict:
    """The stored B7 signature of ``chat_id`` (memory first, then the database)."""
    signatures = rt.gw.signatures
    sig = signatures.cached(chat_id) or await run_in_threadpool(signatures.get, chat_id)
    return SignatureResponse(
        text=sig.text, signature=sig.signature, signing_address=rt.gw.signer.address
    ).model_dump()


@limited.get(FILES_PATH + "{link_id}")
async def proxied_file(
    link_id: str,
    user: AuthenticatedUser,
    rt: Runtime,
) -> Response:
    """An image a ``url`` answer named (module files): only for its user, 404 once expired."""
    link = rt.links.get(link_id, user)
    if link is None:
        raise GatewayHTTPError("file not found (unknown, expired or not yours)", status_code=404)
    answer = await _backend_get(rt, link.backend_url, "file")
    if answer.status_code != 200:
        raise GatewayHTTPError("file not found (expired on the backend)", status_code=404)
    return Response(
        answer.raw,
        media_type=answer.headers.get("content-type"),
        headers={"Cache-Control": "private, no-store"},
    )


# ---------------------------------------------------------------------------------- async jobs


@limited.post("/v1/async/images/generations")
@limited.post("/v1/proxy/async/images/generations")
async def async_generate(
    request: Request, rt: Runtime, slot: HeldSlot, body: RequestBody
) -> Response:
    """Create an async generation job (B2), billed when it completes (also served by
    :mod:`broker.provider.hot_route`)."""
    return await respond_billed(rt, request, "/images/generations", slot, body, async_job=True)


@limited.post("/v1/async/images/edits")
@limited.post("/v1/proxy/async/images/edits")
async def async_edit(request: Request, rt: Runtime, slot: HeldSlot, body: RequestBody) -> Response:
    """Create an async edit job (B2), billed when it completes (also served by
    :mod:`broker.provider.hot_route`)."""
    return await respond_billed(rt, request, "/images/edits", slot, body, async_job=True)


@limited.get("/v1/async/jobs/{job_id}")
@limited.get("/v1/proxy/async/jobs/{job_id}")
async def async_job(
    job_id: JobId,
    user: AuthenticatedUser,
    rt: Runtime,
) -> Response:
    """The backend's answer about the caller's own job (anyone else's: 404), which is also
    applied to its billing; image links are rewritten to ours."""
    owner = await run_in_threadpool(rt.jobs.owner, job_id)
    if owner is None or owner.lower() != user.lower():
        raise GatewayHTTPError("job not found", status_code=404)
    answer = await _backend_get(rt, rt.job_url(job_id), "async job")
    code, raw = answer.status_code, answer.raw
    body = json_or_none(raw, answer.content_encoding)
    await run_in_threadpool(rt.jobs.observe, job_id, code, body)
    headers = response_headers(answer.headers)  # Retry-After and the rest pass through
    if code == 200:
        backend = rt.settings.backend_for("/images")
        linked = rt.links.rewrite(raw, user, backend, answer.content_encoding)
        if linked is not None:
            raw = linked
            headers.pop("content-encoding", None)
    return Response(raw, status_code=code, headers=headers)


# ---------------------------------------------------------------------------------- /v1/proxy


async def _forward_free(rt: GatewayRuntime, request: Request, route: str, body: bytes) -> Response:
    """A free ``/v1/proxy`` route (``/attestation...``): forwarded as is, nothing recorded."""
    try:
        upstream = await rt.forwarder.send(
            request.method,
            rt.settings.backend_for(route) + route,
            forward_headers(request.headers, rt.secret_headers),
            body,
            dict(request.query_params),
        )
    except Exception as exc:  # noqa: BLE001 - any transport failure is the backend's
        raise GatewayHTTPError(
            f"forward request: backend unreachable ({type(exc).__name__})", status_code=502
        ) from None
    try:
        raw = b"".join([c async for c in upstream.aiter_raw()])
    finally:
        await upstream.aclose()
    return Response(
        raw, status_code=upstream.status_code, headers=response_headers(upstream.headers)
    )


@proxied.api_route("/v1/proxy/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
async def proxy(
    request: Request,
    rt: Runtime,
    route: ProxyRoute,
    slot: HeldSlot,
    body: RequestBody,
) -> Response:
    """A billable route (:func:`respond_billed`) or a free one; any other is refused (400). A
    ``POST`` to a billable route is served by :mod:`broker.provider.hot_route` (the same checks
    without FastAPI's routing); this route stays for the schema and the other spellings."""
    if route in BILLABLE_ROUTES:
        return await respond_billed(rt, request, route, slot, body)
    return await _forward_free(rt, request, route, body)


#: The route groups in the order the app includes them (the catch-all last).
ROUTERS = (public, limited, proxied)
