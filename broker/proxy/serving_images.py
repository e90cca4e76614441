"""Image routes: ``POST /v1/images/generations``, ``POST /v1/images/edits``,
``POST /v1/async/images/generations``, ``GET /v1/async/jobs/{id}`` (``user-broker.md`` §10.1).

Generation requests are rewritten as the SDK's ``serve`` does (``size`` 512x512 and ``n`` 1 when
missing). Differences from the SDK's ``serve`` (§13 items 14, 16): the caller's ``model`` is kept
(the default is inserted only when missing or empty), the provider's status and headers
(``ZG-Res-Key``, ``Retry-After``, ``Location``) are returned, errors come back in OpenAI's shape,
timeouts apply (images 600 s), and async jobs are billed as the provider bills them
(provider-gateway.md B9): the submission records the job (nothing billed), the first poll that
reports ``completed`` bills ``n × outputPrice`` once, a ``failed`` job (or one the provider answers
404 for) is never billed; the state is kept in the fee store's database
(:class:`~broker.proxy.billing.Billing`).

Verification of async jobs: the submission's 202 carries ``ZG-Res-Key`` and its signature is checked
as for any response. A completed poll is verified (mode ``warn``/``enforce``) when it carries a
``ZG-Res-Key``; our gateway (and the reference) do not sign job results, so a completed poll without
one gets ``X-0G-Verified: none`` and, on the billing poll, a ``verified=None`` entry in the
verification log; ``enforce`` does not refuse it (there is nothing it could check).
"""

from __future__ import annotations

import json
import logging
from typing import Any

from fastapi import Request
from fastapi.responses import Response

from broker.inference.response_signature import ResponseBinding
from broker.proxy.billing import AsyncJobOutcome
from broker.proxy.context import (
    FEE_HEADER,
    ProxyContext,
    complete_response,
    forwarded_body,
    read_json,
    read_multipart,
)
from broker.proxy.errors import ProxyHTTPError
from broker.proxy.files import link_files
from broker.proxy.multipart import ensure_field, form_fields
from broker.proxy.router_async import pop_router_extensions
from broker.proxy.service_routes import check_model
from broker.proxy.upstream import decode_body, error_from_upstream
from broker.proxy.verification import REASON_HEADER, VERIFIED_HEADER, header_value, reason_value
from broker.wire.job_id import is_valid_job_id
from broker.wire.json_body import loads_json_or_none
from broker.wire.n import InvalidNError, parse_n, request_n

__all__ = [
    "DEFAULT_IMAGE_SIZE",
    "async_generate_image",
    "edit_image",
    "generate_image",
    "get_job",
    "prepare_image_request",
]

logger = logging.getLogger(__name__)

#: ``size`` the SDK's ``serve`` sends when the client gives none (§10.1).
DEFAULT_IMAGE_SIZE = "512x512"


def prepare_image_request(body: dict, default_model: str) -> bytes:
    """Validate and rewrite a text-to-image request as the SDK's ``serve`` does (§10.1:
    ``{model, prompt, size: "512x512", n: 1, ...body}``): ``size`` and ``n`` are added only when
    the client sent none, the client's values win; ``model`` is the provider's default when missing
    or empty.

    Args:
        body: the client's JSON object (modified in place).
        default_model: the provider's on-chain default model.

    Returns:
        The forwarded JSON bytes in the gateway's form
        (:func:`~broker.proxy.context.forwarded_body`; their sha256 is the signed request hash),
        also what is billed: ``n`` images.

    Raises:
        ProxyHTTPError: 400 ``Missing prompt in request body``; 400 ``invalid_n`` when ``n`` is not
            an integer from 1 to 16 (:mod:`broker.wire.n`; ``"2.0"`` or ``2.0`` is refused).
    """
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ProxyHTTPError(
            "Missing prompt in request body",
            status_code=400,
            type="invalid_request_error",
            code="missing_prompt",
            param="prompt",
        )
    if not body.get("model"):
        body["model"] = default_model
    body.setdefault("size", DEFAULT_IMAGE_SIZE)
    body["n"] = _checked_n(parse_n, body.get("n"))
    return forwarded_body(body)


def _checked_n(rule, *args) -> int:
    """``n`` by the shared rule (:mod:`broker.wire.n`): the count billed and forwarded.

    Raises:
        ProxyHTTPError: 400 ``invalid_request_error`` / ``invalid_n``, param ``n``.
    """
    try:
        return rule(*args)
    except InvalidNError as exc:
        raise ProxyHTTPError(
            str(exc), status_code=400, type="invalid_request_error", code="invalid_n", param="n"
        ) from None


async def _image_request(ctx: ProxyContext, request: Request) -> bytes:
    """A text-to-image request body, read, checked (model, ``n``) and in the forwarded form; the
    Router's extension fields taken off (sync and async routes alike)."""
    data = await read_json(request, ctx.settings.max_body_bytes)
    pop_router_extensions(data, request)
    check_model(ctx, "images", data.get("model"))
    return prepare_image_request(data, ctx.default_model)


async def generate_image(ctx: ProxyContext, request: Request) -> Response:
    """Text-to-image through the provider (``{url}/v1/proxy/images/generations``); billed ``n``."""
    body = await _image_request(ctx, request)
    response = await ctx.upstream.send(
        "POST",
        "/images/generations",
        family="images",
        content=body,
        content_type="application/json",
        route="images/generations",
    )
    answer = await complete_response(ctx, response, lambda _raw: body, request_body=body)
    return await link_files(ctx, request, answer)  # after verification (module files)


async def edit_image(ctx: ProxyContext, request: Request) -> Response:
    """Image editing (multipart passed through, ``model`` field inserted when missing); billed
    ``n`` (default 1). A form that does not parse is refused (400 ``invalid_multipart``) before
    it is forwarded."""
    raw, ctype = await read_multipart(request, ctx.settings.max_body_bytes, "images/edits")
    fields = form_fields(raw, ctype, "images/edits")  # a malformed form is never forwarded
    model = fields.get("model")
    check_model(ctx, "image-edits", model[0] if model else None)
    raw = ensure_field(raw, ctype, fields, "model", ctx.default_model)
    content = {"n": _checked_n(request_n, raw, ctype)}
    response = await ctx.upstream.send(
        "POST",
        "/images/edits",
        family="images",
        content=raw,
        content_type=ctype,
        route="images/edits",
    )
    answer = await complete_response(ctx, response, lambda _raw: content, request_body=raw)
    return await link_files(ctx, request, answer)  # after verification (module files)


def _json_or_none(raw: bytes) -> Any:
    return loads_json_or_none(raw)


def _job_id_of(raw: bytes) -> str | None:
    """``jobId`` (else ``id``) of a job body, or None."""
    body = _json_or_none(raw)
    if not isinstance(body, dict):
        return None
    job_id = body.get("jobId") or body.get("id")
    return job_id if is_valid_job_id(job_id) else None


async def async_generate_image(ctx: ProxyContext, request: Request) -> Response:
    """Queue a text-to-image job (``{url}/v1/async/images/generations``); 202 with the job id and
    ``Retry-After`` passed through. Nothing is billed here: the job id and its ``n`` are recorded in
    the fee store and billed when a poll first reports the job completed (:func:`get_job`)."""
    body = await _image_request(ctx, request)
    response = await ctx.upstream.send(
        "POST",
        "/v1/async/images/generations",
        proxy=False,
        family="images",
        content=body,
        content_type="application/json",
        route="async/images/generations",
    )

    async def remember(_status: int, raw: bytes) -> None:
        job_id = _job_id_of(raw)
        if job_id is None:
            logger.warning(
                "the provider %s accepted an async job without a job id; it cannot be "
                "billed locally",
                ctx.provider,
            )
            return
        await ctx.billing.record_async_job(job_id, json.loads(body))

    # refused in enforce: the provider still bills the job when it completes (B9); recorded as
    # disputed now (n images), since the client never learns the job id to poll it
    return await complete_response(
        ctx, response, None, on_body=remember, request_body=body, refused_bill=lambda _raw: body
    )


async def get_job(ctx: ProxyContext, job_id: str) -> Response:
    """Poll a job (``{url}/v1/async/jobs/{id}``): the provider's status, body and ``Retry-After``;
    answered as ``application/json`` with ``nosniff`` whatever type the provider gave.

    The first answer ``completed`` bills the job (``X-0G-Fee``: the neuron accounted by this poll,
    0 on every other poll); ``failed`` or 404 marks it never billed. A completed poll is verified
    when it carries ``ZG-Res-Key`` (``enforce`` may refuse it); without one ``X-0G-Verified`` is
    ``none`` (the provider does not sign job results).

    Raises:
        ProxyHTTPError: 404 for a malformed id (:mod:`broker.wire.job_id`); the provider's errors
        mapped (404 stays 404);
        VerificationRefusedError in ``enforce`` mode for a signed result that does not verify.
    """
    if not is_valid_job_id(job_id):
        raise ProxyHTTPError(
            "job not found (malformed job id)",
            status_code=404,
            type="invalid_request_error",
            code="job_not_found",
            param="job_id",
        )
    response = await ctx.upstream.send(
        "GET", f"/v1/async/jobs/{job_id}", proxy=False, route="async/jobs"
    )
    received = await ctx.upstream.read_raw(response)
    raw = decode_body(received, response.headers)
    body = _json_or_none(raw)
    outcome, fee = await ctx.billing.observe_async_job(job_id, response.status_code, body)
    if response.status_code >= 400:
        raise error_from_upstream(response.status_code, raw, response.headers)
    headers = {
        k: v
        for k, v in response.headers.items()
        if k.lower() in ("retry-after", "location", "zg-res-key")
    }
    headers[FEE_HEADER] = str(fee)
    if isinstance(body, dict) and body.get("status") == "completed":
        chat_id = response.headers.get("zg-res-key")
        if chat_id:  # signed by the gateway: bind the result bytes (no request body to hash)
            result = await ctx.verifier.verify(
                chat_id, binding=ResponseBinding.of(response_body=received)
            )
            ctx.verifier.enforce(result)
        else:
            result = await ctx.verifier.unsigned(
                f"async job {job_id}: the provider does not sign job results (no ZG-Res-Key)",
                record=outcome is AsyncJobOutcome.BILLED,
            )
        headers[VERIFIED_HEADER] = header_value(result)
        headers[REASON_HEADER] = reason_value(result)
    # a poll is a GET a browser may open: its body is the provider's, but it is answered as
    # JSON (never the provider's type, e.g. text/html, which would make it one of serve's pages)
    headers["X-Content-Type-Options"] = "nosniff"
    return Response(
        raw, status_code=response.status_code, headers=headers, media_type="application/json"
    )
