"""Image routes: ``POST /v1/images/generations``, ``POST /v1/images/edits``,
``POST /v1/async/images/generations``, ``GET /v1/async/jobs/{id}`` (``user-broker.md`` §10.1).

Generation requests are rewritten as the SDK's ``serve`` does (``size`` 512x512 and ``n`` 1 when
missing). Differences from the SDK's ``serve`` (§13 items 14, 16): the caller's ``model`` is kept
(the default is inserted only when missing or empty), the provider's status and headers (``ZG-Res-Key``, ``Retry-After``,
``Location``) are returned, errors come back in OpenAI's shape, timeouts apply (images 600 s), and
async jobs are billed once at submission (polling never bills).
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

from broker.proxy.context import ProxyContext, complete_response, read_body, read_json
from broker.proxy.errors import ProxyHTTPError
from broker.proxy.multipart import ensure_field, text_field
from broker.proxy.upstream import json_dumps

__all__ = [
    "DEFAULT_IMAGE_SIZE",
    "async_generate_image",
    "edit_image",
    "generate_image",
    "get_job",
    "prepare_image_request",
]

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
        The forwarded JSON bytes (also what is billed: ``n`` images).

    Raises:
        ProxyHTTPError: 400 ``Missing prompt in request body``.
    """
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ProxyHTTPError("Missing prompt in request body", status_code=400,
                             type="invalid_request_error", code="missing_prompt", param="prompt")
    if not body.get("model"):
        body["model"] = default_model
    body.setdefault("size", DEFAULT_IMAGE_SIZE)
    body.setdefault("n", 1)
    return json_dumps(body)


async def generate_image(ctx: ProxyContext, request: Request) -> Response:
    """Text-to-image through the provider (``{url}/v1/proxy/images/generations``); billed ``n``."""
    body = prepare_image_request(await read_json(request, ctx.settings.max_body_bytes),
                                 ctx.default_model)
    response = await ctx.upstream.send("POST", "/images/generations", family="images",
                                       content=body, content_type="application/json",
                                       route="images/generations")
    return await complete_response(ctx, response, lambda _raw: body)


async def edit_image(ctx: ProxyContext, request: Request) -> Response:
    """Image editing (multipart passed through, ``model`` field inserted when missing); billed
    ``n`` (default 1)."""
    ctype = request.headers.get("content-type", "")
    if not ctype.lower().startswith("multipart/form-data"):
        raise ProxyHTTPError("images/edits expects multipart/form-data", status_code=400,
                             type="invalid_request_error", code="invalid_content_type")
    raw = ensure_field(await read_body(request, ctx.settings.max_body_bytes), ctype, "model",
                       ctx.default_model)
    n = text_field(raw, ctype, "n")
    content = {"n": int(n)} if n and n.strip().isdigit() else {"n": 1}
    response = await ctx.upstream.send("POST", "/images/edits", family="images", content=raw,
                                       content_type=ctype, route="images/edits")
    return await complete_response(ctx, response, lambda _raw: content)


async def async_generate_image(ctx: ProxyContext, request: Request) -> Response:
    """Queue a text-to-image job (``{url}/v1/async/images/generations``); 202 with the job id and
    ``Retry-After`` passed through; billed once here."""
    body = prepare_image_request(await read_json(request, ctx.settings.max_body_bytes),
                                 ctx.default_model)
    response = await ctx.upstream.send("POST", "/v1/async/images/generations", proxy=False,
                                       family="images", content=body,
                                       content_type="application/json",
                                       route="async/images/generations")
    return await complete_response(ctx, response, lambda _raw: body)


async def get_job(ctx: ProxyContext, job_id: str) -> Response:
    """Poll a job (``{url}/v1/async/jobs/{id}``): the provider's status, body and ``Retry-After``;
    never billed, never verified (the submission was)."""
    if not job_id or "/" in job_id or len(job_id) > 200:
        raise ProxyHTTPError("invalid job id", status_code=400, type="invalid_request_error")
    response = await ctx.upstream.send("GET", f"/v1/async/jobs/{job_id}", proxy=False,
                                       route="async/jobs")
    await ctx.upstream.raise_for_status(response)
    raw = await ctx.upstream.read(response)
    headers = {k: v for k, v in response.headers.items()
               if k.lower() in ("retry-after", "location")}
    return Response(raw, status_code=response.status_code, headers=headers,
                    media_type=response.headers.get("content-type", "application/json"))
