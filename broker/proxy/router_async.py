"""The 0G Router's additions to the async image API, on ``serve`` (seed ``001``, ``image-apis.md``):

* the submission's 202 body carries ``provider_address`` (the checksummed provider serving the job);
* a poll carries ``createdAt`` (ISO 8601 UTC with milliseconds: the provider's ``created``, else the
  time ``serve`` accepted the submission) and, once ``completed``, ``x_0g_trace``
  ``{request_id, provider, billing: {input_cost, output_cost, total_cost}}``: ``request_id`` is the
  submission's ``ZG-Res-Key``; costs are 0G decimal strings (as the Router writes them): input 0,
  output the fee this job was billed (``n × outputPrice``, provider-gateway.md B9);
* when the submission asked ``verify_tee: true``, a completed poll carries ``tee_verified``
  (``true`` / ``false`` / ``null``) and ``tee_verification`` ``{reason, chat_id, detail}``: the
  provider's TEE signature of the job is checked (whatever ``--verify`` says). Our gateway (and the
  reference) sign the submission, not the job result; the detail says which was checked;
* the Router's extension fields ``provider`` and ``verify_tee`` are stripped from the body before it
  is forwarded (sync and async), see :func:`pop_router_extensions`.

The job's ``request_id``, ``verify_tee`` and submission time are kept in
:class:`~broker.proxy.state_store.ServeStateStore` (a restarted ``serve`` answers the same).
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from broker.inference.fee_store import AsyncJobStatus
from broker.proxy.state_store import RouterJob, ServeStateStore
from broker.proxy.timefmt import iso_utc
from broker.units import format_0g
from broker.wire.job_id import is_valid_job_id
from broker.wire.json_body import loads_json_or_none

if TYPE_CHECKING:
    from fastapi import Request

    from broker.proxy.context import ProxyContext

__all__ = [
    "ROUTER_EXTENSION_FIELDS",
    "check_provider_address",
    "decorate_poll",
    "decorate_submission",
    "pop_router_extensions",
    "state_store",
]

#: The Router's extension fields: used by ``serve``, never forwarded to the provider.
ROUTER_EXTENSION_FIELDS = ("provider", "verify_tee")

_EXTENSIONS_KEY = "router_extensions"
_TEE_CACHE_SIZE = 10_000


def pop_router_extensions(body: dict[str, Any], request: Request | None = None) -> dict[str, Any]:
    """Remove :data:`ROUTER_EXTENSION_FIELDS` from ``body`` (in place) and return them; with
    ``request`` they are also kept on ``request.state`` for :func:`decorate_submission`."""
    found = {k: body.pop(k) for k in ROUTER_EXTENSION_FIELDS if k in body}
    if request is not None:
        setattr(request.state, _EXTENSIONS_KEY, found)
    return found


def check_provider_address(ctx: ProxyContext, provider_address: str | None) -> None:
    """A poll's ``?provider_address=`` (jobs are pinned to their provider, seed 001) must be the
    provider this ``serve`` serves (case-insensitive); absent is fine.

    Raises:
        ProxyHTTPError: 404 ``invalid_request_error`` / ``job_not_found`` naming both addresses.
    """
    if provider_address is None or provider_address.lower() == ctx.provider.lower():
        return
    from broker.proxy.errors import ProxyHTTPError

    shown = provider_address[:64].encode("utf-8", "replace").decode("utf-8")
    raise ProxyHTTPError(
        f"this serve runs jobs of provider {ctx.provider} only; it has no job of provider {shown}",
        status_code=404,
        type="invalid_request_error",
        code="job_not_found",
        param="provider_address",
    )


def state_store(ctx: ProxyContext) -> ServeStateStore:
    """The context's :class:`ServeStateStore` (opened on first use at ``settings.state_url``)."""
    store = ctx.extra.get("state_store")
    if store is None:
        store = ctx.extra.setdefault("state_store", ServeStateStore(ctx.settings.state_url))
    return store


def _json_body(response: Response) -> dict[str, Any] | None:
    body = loads_json_or_none(getattr(response, "body", b""))
    return body if isinstance(body, dict) else None


def _rerender(response: Response, body: dict[str, Any]) -> Response:
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    return Response(
        json.dumps(body, separators=(",", ":")).encode(),
        status_code=response.status_code,
        headers=headers,
        media_type="application/json",
    )


async def decorate_submission(ctx: ProxyContext, request: Request, response: Response) -> Response:
    """Add ``provider_address`` to a 202 job submission and remember the job (request id,
    ``verify_tee``, time). Other answers are returned unchanged."""
    body = _json_body(response)
    if response.status_code != 202 or body is None:
        return response
    job_id = body.get("jobId") or body.get("id")
    extensions = getattr(request.state, _EXTENSIONS_KEY, {}) or {}
    if is_valid_job_id(job_id):
        job = RouterJob(
            job_id=job_id,
            request_id=response.headers.get("zg-res-key"),
            verify_tee=extensions.get("verify_tee") is True,
            created_at=time.time(),
        )
        await run_in_threadpool(
            state_store(ctx).record_router_job, ctx.inference.address, ctx.provider, job
        )
    body["provider_address"] = ctx.provider
    return _rerender(response, body)


def _created_at(body: dict[str, Any], job: RouterJob | None) -> str | None:
    created = body.get("created")
    if isinstance(created, int | float) and not isinstance(created, bool) and created > 0:
        return iso_utc(float(created))
    return iso_utc(job.created_at) if job is not None else None


def _billing(ctx: ProxyContext, job_id: str) -> dict[str, str]:
    job = ctx.inference.fee_store.get_async_job(ctx.inference.address, ctx.provider, job_id)
    if job is not None and job.status is AsyncJobStatus.BILLED:
        output = job.fee
    elif job is not None:
        output = job.images * ctx.service.output_price
    else:
        output = 0
    return {"input_cost": "0", "output_cost": format_0g(output), "total_cost": format_0g(output)}


async def _tee(ctx: ProxyContext, job: RouterJob, poll_key: str | None) -> dict[str, Any]:
    from broker.proxy.verification import Verifier

    cache: dict[str, Any] = ctx.extra.setdefault("tee_results", {})
    if job.job_id in cache:
        return cache[job.job_id]
    chat_id = poll_key or job.request_id
    if chat_id is None:
        out = {
            "tee_verified": None,
            "tee_verification": {
                "reason": "no_chat_id",
                "chat_id": None,
                "detail": "the provider gave no ZG-Res-Key for this job: nothing to verify",
            },
        }
        cache[job.job_id] = out
        return out
    verifier = Verifier(ctx.inference, ctx.provider, "warn", ctx.upstream.signatures, ctx.metrics)
    result = await verifier.verify(chat_id)
    what = (
        "the job result"
        if poll_key
        else "the job submission (the provider does not sign job results)"
    )
    detail = f"checked the provider's TEE signature of {what}"
    if result is not None and result.detail:
        detail += f": {result.detail}"
    out = {
        "tee_verified": None if result is None else result.verified,
        "tee_verification": {
            "reason": None if result is None else result.reason.value,
            "chat_id": chat_id,
            "detail": detail,
        },
    }
    if result is not None and result.verified is not None:
        if len(cache) >= _TEE_CACHE_SIZE:
            cache.clear()  # a bound, not an LRU: results are cheap to redo
        cache[job.job_id] = out
    return out


async def decorate_poll(ctx: ProxyContext, job_id: str, response: Response) -> Response:
    """Add ``createdAt`` to a job poll and, once completed, ``x_0g_trace`` (and the TEE result
    when the submission asked ``verify_tee``). Error answers are returned unchanged."""
    body = _json_body(response)
    if response.status_code != 200 or body is None:
        return response
    job = await run_in_threadpool(
        state_store(ctx).get_router_job, ctx.inference.address, ctx.provider, job_id
    )
    created = _created_at(body, job)
    if created is not None:
        body.setdefault("createdAt", created)
    if body.get("status") == "completed":
        billing = await run_in_threadpool(_billing, ctx, job_id)
        body["x_0g_trace"] = {
            "request_id": job.request_id if job else None,
            "provider": ctx.provider,
            "billing": billing,
        }
        if job is not None and job.verify_tee:
            body.update(await _tee(ctx, job, response.headers.get("zg-res-key")))
    return _rerender(response, body)
