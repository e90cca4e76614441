"""``POST /v1/chat/completions`` (``user-broker.md`` §10.1, with §13 items 14 and 16 fixed).

The caller's ``model`` is kept (the provider's default inserted only when missing); streams are
requested with ``stream_options.include_usage`` so usage can be billed, and relayed as they arrive
(:mod:`broker.proxy.streaming`); non-streamed answers keep the provider's status and ``ZG-Res-Key``.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

from broker.proxy.billing import AnswerBody
from broker.proxy.context import ProxyContext, complete_response, forwarded_body, read_json
from broker.proxy.errors import ProxyHTTPError
from broker.proxy.service_routes import check_model
from broker.proxy.streaming import stream_response
from broker.wire.forwarded_request import apply_chat_stream_rewrite

__all__ = ["chat_completions", "prepare_chat_request"]


def prepare_chat_request(body: dict, default_model: str) -> tuple[bytes, bool]:
    """Validate and rewrite a chat request.

    Returns:
        ``(forwarded JSON bytes, stream)``: the bytes are in the form a gateway forwards them
        (:func:`broker.wire.forwarded_request.canonical_json`, Go's ``json.Marshal``; streams with
        ``stream_options.include_usage``), so their sha256 is the request hash the provider signs.

    Raises:
        ProxyHTTPError: 400 when ``messages`` is not a non-empty list, or when a number cannot be
            forwarded exactly (an integer beyond a float64).
    """
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ProxyHTTPError(
            "Missing or invalid messages in request body",
            status_code=400,
            type="invalid_request_error",
            code="invalid_messages",
            param="messages",
        )
    if not body.get("model"):
        body["model"] = default_model
    stream = body.get("stream") in (True, "true")
    if stream:
        body["stream"] = True
        apply_chat_stream_rewrite(body)
    return forwarded_body(body), stream


async def chat_completions(ctx: ProxyContext, request: Request) -> Response:
    """Forward a chat completion; bill its usage; verify its signature."""
    data = await read_json(request, ctx.settings.max_body_bytes)
    check_model(ctx, "chat", data.get("model"))
    body, stream = prepare_chat_request(data, ctx.default_model)
    response = await ctx.upstream.send(
        "POST",
        "/chat/completions",
        family="chat",
        content=body,
        content_type="application/json",
        route="chat/completions",
    )
    if (
        stream
        and "text/event-stream" in response.headers.get("content-type", "")
        and response.status_code < 400
    ):
        return await stream_response(ctx, response, request_body=body)
    return await complete_response(ctx, response, AnswerBody, request_body=body)
