"""Relaying an upstream SSE stream to the client as it arrives, with usage billing and response
verification once it ends.

Each event is relayed as soon as it is complete. The terminating ``data: [DONE]`` is held back until
the usage is billed and the signature checked, so a client that has seen ``[DONE]`` can rely on the
accounting being done. Before ``[DONE]`` an SSE comment ``: X-0G-Verified: <value>`` carries the
outcome (clients ignore comments). In ``enforce`` mode a stream whose signature does not verify ends
with an OpenAI error event ``data: {"error": {...}}`` instead of ``[DONE]`` (the official clients raise
``APIError``). A client that disconnects early does not stop the accounting: the rest of the stream
is drained and billed in the background.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import httpx
from fastapi.responses import StreamingResponse

from broker.inference.chat_id import SSEChatIdExtractor, chat_id_from_headers
from broker.inference.fees import UsageStreamCollector
from broker.inference.sse import SSEDecoder
from broker.proxy.context import ProxyContext
from broker.proxy.errors import ProxyHTTPError
from broker.proxy.protocol import ErrorBody, ErrorResponse
from broker.proxy.upstream import passthrough_headers
from broker.proxy.verification import VERIFIED_HEADER, header_value

__all__ = ["stream_response"]

logger = logging.getLogger(__name__)

_background: set[asyncio.Task] = set()


def _error_event(exc: ProxyHTTPError) -> bytes:
    body = ErrorResponse(error=ErrorBody(message=exc.message, type=exc.type, code=exc.code))
    return b"data: " + body.model_dump_json().encode() + b"\n\n"


def _encode(events: list[str]) -> bytes:
    """Re-encode completed events (``[DONE]`` withheld); multi-line data keeps one ``data:`` per
    line."""
    out = bytearray()
    for data in events:
        if data.strip() == "[DONE]":
            continue
        for line in data.split("\n"):
            out += b"data: " + line.encode() + b"\n"
        out += b"\n"
    return bytes(out)


class _StreamState:
    def __init__(self, response: httpx.Response) -> None:
        self.usage = UsageStreamCollector()
        self.ids = SSEChatIdExtractor()
        self.chat_id = chat_id_from_headers(response.headers)
        self.finished = False

    def feed(self, chunk: bytes) -> None:
        self.usage.feed(chunk)
        if self.chat_id is None:
            self.ids.feed(chunk)


async def _settle(ctx: ProxyContext, state: _StreamState):
    usage = state.usage.close()
    chat_id = state.chat_id or state.ids.close()
    await ctx.billing.record(json.dumps(usage) if usage is not None else None)
    return await ctx.verifier.verify(chat_id)


async def _drain_and_settle(ctx: ProxyContext, response: httpx.Response,
                            state: _StreamState) -> None:
    try:
        async for chunk in response.aiter_bytes():
            state.feed(chunk)
    except httpx.HTTPError:
        pass
    finally:
        await response.aclose()
    try:
        await _settle(ctx, state)
    except Exception:
        logger.exception("accounting of an abandoned stream failed")


def stream_response(ctx: ProxyContext, response: httpx.Response) -> StreamingResponse:
    """A :class:`StreamingResponse` relaying ``response`` (status 200, SSE) to the client.

    Args:
        ctx: the proxy context. response: the upstream response, status < 400, body unread.
    """
    enforce = ctx.verifier.mode == "enforce"
    state = _StreamState(response)

    async def relay() -> AsyncIterator[bytes]:
        decoder = SSEDecoder()
        try:
            async for chunk in response.aiter_bytes():
                state.feed(chunk)
                out = _encode(decoder.feed(chunk))
                if out:
                    yield out
            out = _encode(decoder.close())
            if out:
                yield out
        except httpx.HTTPError as exc:
            await response.aclose()
            state.finished = True
            yield _error_event(ProxyHTTPError(
                f"the provider's stream broke off ({type(exc).__name__})", status_code=502,
                type="upstream_error", code="upstream_stream_broken"))
            await _settle(ctx, state)
            return
        except BaseException:
            # client gone (cancelled / generator closed): finish reading and billing elsewhere
            if not state.finished:
                state.finished = True
                task = asyncio.get_running_loop().create_task(
                    _drain_and_settle(ctx, response, state))
                _background.add(task)
                task.add_done_callback(_background.discard)
            raise
        state.finished = True
        await response.aclose()
        result = await _settle(ctx, state)
        yield f": {VERIFIED_HEADER}: {header_value(result)}\n\n".encode()
        if enforce:
            try:
                ctx.verifier.enforce(result)
            except ProxyHTTPError as exc:
                yield _error_event(exc)
                return
        yield b"data: [DONE]\n\n"

    headers = passthrough_headers(response.headers)
    headers.pop("content-type", None)
    headers.pop("Content-Type", None)
    headers[VERIFIED_HEADER] = "off" if ctx.verifier.mode == "off" else "deferred"
    headers["Cache-Control"] = "no-cache"
    headers["X-Accel-Buffering"] = "no"
    return StreamingResponse(relay(), status_code=response.status_code, headers=headers,
                             media_type="text/event-stream")
