"""``POST /v1/audio/transcriptions`` (``user-broker.md`` §10.1): the multipart body is passed
through with a ``model`` field inserted when missing; SSE answers are relayed as they arrive; usage
(duration or token mode, §7.2) is billed; the response signature is verified, bound to the multipart
bytes sent (the gateway forwards them unchanged) and the response bytes received."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

from broker.proxy.billing import AnswerBody
from broker.proxy.context import ProxyContext, complete_response, read_multipart
from broker.proxy.multipart import ensure_field, form_fields
from broker.proxy.service_routes import check_model
from broker.proxy.streaming import stream_response

__all__ = ["transcriptions"]


async def transcriptions(ctx: ProxyContext, request: Request) -> Response:
    """Forward a transcription request; bill its ``usage``; verify. A form that does not parse is
    refused (400 ``invalid_multipart``) before it is forwarded."""
    raw, ctype = await read_multipart(request, ctx.settings.max_body_bytes, "audio/transcriptions")
    fields = form_fields(raw, ctype, "audio/transcriptions")  # a malformed form is not forwarded
    model = fields.get("model")
    check_model(ctx, "audio", model[0] if model else None)
    raw = ensure_field(raw, ctype, fields, "model", ctx.default_model)
    response = await ctx.upstream.send(
        "POST",
        "/audio/transcriptions",
        family="audio",
        content=raw,
        content_type=ctype,
        route="audio/transcriptions",
    )
    if (
        "text/event-stream" in response.headers.get("content-type", "")
        and response.status_code < 400
    ):
        return await stream_response(ctx, response, request_body=raw)
    return await complete_response(ctx, response, AnswerBody, request_body=raw)
