"""Streamed (SSE) answers: usage billing and response verification bound to the whole raw stream.

The signature covers sha256 of the complete raw SSE byte stream as the gateway received it (B7), so
a stream can only be verified once it has ended:

* ``enforce``: the whole stream is read (and hashed) first, then verified; a stream that does not
  verify is refused with a 502 before any of its bytes reach the client (its fee recorded as
  disputed); one that verifies is sent in one go. Enforce therefore gives up incremental delivery.
* ``warn`` / ``off``: each event is relayed as soon as it is complete while the raw bytes are hashed
  incrementally; ``[DONE]`` waits until the usage is billed and the signature checked. A client
  that disconnects early does not stop the accounting: the rest of the stream is read, hashed,
  billed and verified all the same (in the background when the relay itself was cancelled). A
  stream that breaks off ends with an error event (its unfinished last event and a held-back
  ``[DONE]`` are not sent).

The client gets the provider's bytes unchanged (a relay does not touch the wire format: ``event:``,
``id:`` and ``retry:`` fields, comments, the line ends, the spacing after ``data:`` all pass as they
came), cut into events by :class:`broker.wire.sse.SSEDecoder` (an event ends at a blank line; lines
end with ``\\n``, ``\\r\\n`` or ``\\r``). The only bytes ``serve`` adds are the outcome comments
``: X-0G-Verified: <value>`` and ``: X-0G-Verification-Reason: <reason>`` (each a comment line and a
blank line, in the stream's own line ends; clients ignore comments), inserted at an event
boundary: before the provider's ``data: [DONE]`` event (that event and anything after it are held
back until the accounting is done, so a client that has seen ``[DONE]`` can rely on it), or, when
there is none, before an unterminated last event, else at the end. ``serve`` adds no ``[DONE]`` of
its own. Those two comments are ``serve``'s alone: a comment line of the provider's stream that
looks like one of them (``:X-0G-...``, any case) is not passed on, so that a client reading the
first such comment cannot be shown an outcome the provider (or a relay) wrote. The hash covers the
stream as received, so verification is not affected.

The relay is its own small ASGI response (:class:`_SSERelay`), not Starlette's
``StreamingResponse``: no task group and no second task listening for a disconnect per stream
(the accounting goes on after a disconnect anyway), and each chunk's completed events go out
before their JSON is parsed for the usage and the chat id (still once per event), so the first
event reaches the client as soon as it arrives. An event whose blank line ends with a ``\\r`` at the
end of a chunk goes out at once; a ``\\n`` that then completes that ``\\r\\n`` follows on its own.

A stream with a ``Content-Encoding`` (not requested by ``serve``) is handled as in ``enforce``
(read whole, hashed raw), whatever the mode; its client gets the decoded bytes (the coding header is
not passed on), otherwise unchanged.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from typing import Any

from fastapi.responses import Response

from broker.inference.response_signature import ResponseBinding, VerificationResult
from broker.proxy.billing import AnswerBody
from broker.proxy.context import ProxyContext
from broker.proxy.errors import ProxyHTTPError
from broker.proxy.protocol import ErrorBody, ErrorResponse
from broker.proxy.upstream import (
    TRANSPORT_ERRORS,
    UpstreamResponse,
    decode_body,
    passthrough_headers,
)
from broker.proxy.verification import REASON_HEADER, VERIFIED_HEADER, header_value, reason_value
from broker.wire.chat_id import chat_id_from_headers
from broker.wire.signed_text import sha256_hex
from broker.wire.sse import SSEDecoder, SSEEvent, SSEStreamSummary, is_done, parse_sse_json

__all__ = ["stream_response"]

logger = logging.getLogger(__name__)

_background: set[asyncio.Task] = set()


def _error_event(exc: ProxyHTTPError) -> bytes:
    body = ErrorResponse(error=ErrorBody(message=exc.message, type=exc.type, code=exc.code))
    return b"data: " + body.model_dump_json().encode() + b"\n\n"


#: A comment line of the stream that looks like serve's outcome comments (with its line end).
_OWN_COMMENT = re.compile(rb"(?:^|(?<=[\r\n])):[ \t]*x-0g-[^\r\n]*(?:\r\n|\r|\n)?", re.IGNORECASE)


def _without_own_comments(raw: bytes) -> bytes:
    """``raw`` (stream bytes for the client) without comment lines that look like serve's outcome
    comments (:data:`_OWN_COMMENT`); unchanged, and not searched, when it has no ``0G-``."""
    if b"0G-" not in raw and b"0g-" not in raw:
        return raw
    return _OWN_COMMENT.sub(b"", raw)


def _outcome_comments(result: VerificationResult | None, line_end: bytes) -> bytes:
    """The outcome as two SSE comments, each ended by a blank line (``line_end``: the stream's)."""
    end = line_end + line_end
    return (
        b": "
        + f"{VERIFIED_HEADER}: {header_value(result)}".encode()
        + end
        + b": "
        + f"{REASON_HEADER}: {reason_value(result)}".encode()
        + end
    )


class _StreamState:
    """Usage, chat id, the running sha256 of the raw stream and the bytes held back for the end.
    Each chunk is cut into SSE events once (:meth:`feed_raw` / :meth:`feed_text`, no JSON), the
    relay passes their raw bytes on (:meth:`release`, ``[DONE]`` and what follows held back) and
    each event's data is parsed as JSON once (:meth:`observe`), for the usage, the chat id and the
    text."""

    def __init__(
        self, response: UpstreamResponse, request_body: bytes | None, *, bind: bool = True
    ) -> None:
        self.summary = SSEStreamSummary()  # usage, chat id and text, as the gateway bills them
        self.decoder = SSEDecoder()
        self.chat_id = chat_id_from_headers(response.headers)
        #: the running sha256 of the raw stream; ``None`` without ``bind`` (``off``: nothing is
        #: checked, so nothing is hashed)
        self.hash = hashlib.sha256() if bind else None
        self.request_hash = None if request_body is None or not bind else sha256_hex(request_body)
        self.finished = False
        #: raw bytes held back until the outcome comments: from the ``[DONE]`` event on, and an
        #: unterminated last event (``None``: nothing held back yet)
        self.held: list[bytes] | None = None

    def feed_raw(self, chunk: bytes) -> list[SSEEvent]:
        """A chunk as received (hashed) that is also the decoded stream (no coding); returns the
        events it completed (not yet released nor observed)."""
        if self.hash is not None:
            self.hash.update(chunk)
        return self.decoder.feed_events(chunk)

    def feed_text(self, chunk: bytes) -> list[SSEEvent]:
        """Decoded stream bytes; returns the events they completed."""
        return self.decoder.feed_events(chunk)

    def close(self) -> list[SSEEvent]:
        """End of stream: an unterminated last event, if any; it is held back (it goes after the
        outcome comments, which must start on a line of their own)."""
        events = self.decoder.close_events()
        if events:
            if self.held is None:
                self.held = []
            self.held.extend(event.raw for event in events)
        return events

    def release(self, events: list[SSEEvent]) -> bytes:
        """The raw bytes of completed ``events`` to send now: all of them up to a ``[DONE]`` event,
        which and whatever follows it is held back (:meth:`ending`)."""
        held = self.held
        if held is None:
            for i, event in enumerate(events):
                if event.data is not None and is_done(event.data):
                    self.held = [e.raw for e in events[i:]]
                    events = events[:i]
                    break
            else:
                if len(events) == 1:  # the usual chunk: one event, often the chunk itself
                    return _without_own_comments(events[0].raw)
            return _without_own_comments(b"".join(e.raw for e in events))
        held.extend(e.raw for e in events)
        return b""

    def ending(self, result: VerificationResult | None) -> bytes:
        """The last bytes for the client: the outcome comments, then what was held back."""
        comments = _outcome_comments(result, self.decoder.line_end)
        if not self.held:
            return comments
        return comments + _without_own_comments(b"".join(self.held))

    def observe(self, events: list[SSEEvent]) -> None:
        """Parse each event's data as JSON (once) and add it to the summary."""
        for event in events:
            if event.data is not None:
                obj = parse_sse_json(event.data)
                if obj is not None:
                    self.summary.observe(obj)

    def binding(self) -> ResponseBinding | None:
        """What the signature must cover; ``None`` when nothing was hashed (``off``)."""
        if self.hash is None:
            return None
        return ResponseBinding(self.hash.hexdigest(), self.request_hash)


async def _settle(
    ctx: ProxyContext, state: _StreamState, *, refusable: bool = False
) -> VerificationResult | None:
    """Verify and bill (as disputed when ``refusable`` and enforce refuses: then one after the
    other; otherwise concurrently); returns the result."""
    summary = state.summary.close()
    chat_id = state.chat_id or summary.chat_id
    content = AnswerBody(stream=summary)
    if not (refusable and ctx.verifier.mode == "enforce"):
        # never refused: the fee and the verification result are committed together, in one
        # transaction, before [DONE]
        result = await ctx.verifier.verify(chat_id, binding=state.binding(), record=False)
        await ctx.billing.record(content, chat_id=chat_id, verification=result if chat_id else None)
        return result
    result = await ctx.verifier.verify(chat_id, binding=state.binding())
    refused = ctx.verifier.refuses(result)
    await ctx.billing.record(content, disputed=result if refused else None, chat_id=chat_id)
    return result


def _keep(task: asyncio.Task) -> asyncio.Task:
    """Hold a reference to a background task until it is done."""
    _background.add(task)
    task.add_done_callback(_background.discard)
    return task


def _start_settling(ctx: ProxyContext, state: _StreamState) -> asyncio.Future:
    """:func:`_settle` in its own task, marked finished first: await it shielded
    (``asyncio.shield``) so that a relay cancelled or failing meanwhile does not interrupt the
    billing."""
    state.finished = True
    return _keep(asyncio.ensure_future(_settle(ctx, state)))


async def _drain_and_settle(
    ctx: ProxyContext, response: UpstreamResponse, state: _StreamState
) -> None:
    try:
        async for chunk in response.aiter_raw():
            state.observe(state.feed_raw(chunk))
    except TRANSPORT_ERRORS:
        pass
    finally:
        await response.aclose()
    state.observe(state.close())
    try:
        await _settle(ctx, state)
    except Exception:
        logger.exception("accounting of an abandoned stream failed")


def _client_headers(ctx: ProxyContext, response: UpstreamResponse) -> dict[str, str]:
    headers = passthrough_headers(response.headers)
    headers.pop("content-type", None)
    headers.pop("Content-Type", None)
    headers["Cache-Control"] = "no-cache"
    headers["X-Accel-Buffering"] = "no"
    return headers


async def _buffered(
    ctx: ProxyContext, response: UpstreamResponse, request_body: bytes | None
) -> Response:
    """Read the whole stream, verify it, then answer it in one piece (or refuse it)."""
    state = _StreamState(response, request_body, bind=ctx.verifier.mode != "off")
    received = await ctx.upstream.read_raw(response)
    if state.hash is not None:
        state.hash.update(received)
    text = decode_body(received, response.headers)
    events = state.feed_text(text)
    body = state.release(events)
    events += state.close()
    state.observe(events)
    state.finished = True
    result = await _settle(ctx, state, refusable=True)
    ctx.verifier.enforce(result)  # nothing was sent yet: a refusal is a plain 502
    body += state.ending(result)
    headers = _client_headers(ctx, response)
    headers[VERIFIED_HEADER] = header_value(result)
    headers[REASON_HEADER] = reason_value(result)
    return Response(
        body, status_code=response.status_code, headers=headers, media_type="text/event-stream"
    )


async def stream_response(
    ctx: ProxyContext, response: UpstreamResponse, *, request_body: bytes | None = None
) -> Response:
    """The client's answer for an upstream SSE ``response`` (status < 400, body unread).

    Args:
        ctx: the proxy context. response: the upstream response.
        request_body: the bytes sent upstream in the form the gateway forwards them (their sha256
            must be the signed request hash); ``None``: only the response is bound.

    Returns:
        ``enforce`` (or a compressed stream): a complete :class:`Response` after verification;
        otherwise a streaming response relaying events as they arrive.

    Raises:
        VerificationRefusedError: ``enforce`` and the stream did not verify (nothing was sent).
        UpstreamTimeoutError, UpstreamUnavailableError: a buffered stream broke off.
    """
    coding = response.headers.get("content-encoding", "identity").strip().lower()
    if ctx.verifier.mode == "enforce" or coding not in ("", "identity"):
        return await _buffered(ctx, response, request_body)
    headers = _client_headers(ctx, response)
    headers[VERIFIED_HEADER] = "off" if ctx.verifier.mode == "off" else "deferred"
    state = _StreamState(response, request_body, bind=ctx.verifier.mode != "off")
    return _SSERelay(ctx, response, state, headers)


class _SSERelay(Response):
    """The relayed stream as a plain ASGI response: the response start, then each chunk's completed
    events (their raw bytes, ``[DONE]`` held back) as soon as the chunk arrives, then the outcome
    comments and what was held back once billed and verified (module docstring)."""

    media_type = "text/event-stream"

    def __init__(
        self,
        ctx: ProxyContext,
        upstream: UpstreamResponse,
        state: _StreamState,
        headers: dict[str, str],
    ) -> None:
        self.ctx = ctx
        self.upstream = upstream
        self.state = state
        self.status_code = upstream.status_code
        self.background = None
        self.init_headers(headers)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        state = self.state
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            end = await self._relay(send)
        except BaseException:
            # cancelled, or the client's side failed: finish reading and billing elsewhere
            if not state.finished:
                state.finished = True
                _keep(
                    asyncio.get_running_loop().create_task(
                        _drain_and_settle(self.ctx, self.upstream, state)
                    )
                )
            raise
        await send({"type": "http.response.body", "body": end, "more_body": False})

    async def _relay(self, send: Any) -> bytes:
        """Relay the events; returns the last bytes (outcome comments and what was held back, or
        nothing after a broken stream's error event). A failure of ``send`` propagates."""
        ctx, state, upstream = self.ctx, self.state, self.upstream
        chunks = upstream.aiter_raw()
        while True:
            try:
                chunk = await anext(chunks)
            except StopAsyncIteration:
                break
            except TRANSPORT_ERRORS as exc:
                state.observe(state.close())
                settling = _start_settling(ctx, state)
                await upstream.aclose()
                await send(
                    {
                        "type": "http.response.body",
                        "body": _error_event(
                            ProxyHTTPError(
                                f"the provider's stream broke off ({type(exc).__name__})",
                                status_code=502,
                                type="upstream_error",
                                code="upstream_stream_broken",
                            )
                        ),
                        "more_body": True,
                    }
                )
                await asyncio.shield(settling)
                return b""
            events = state.feed_raw(chunk)
            if events:
                out = state.release(events)
                if out:  # on its way before the events are parsed for the accounting
                    await send({"type": "http.response.body", "body": out, "more_body": True})
                state.observe(events)
        state.observe(state.close())  # an unterminated last event (held back)
        settling = _start_settling(ctx, state)
        await upstream.aclose()
        result = await asyncio.shield(settling)
        return state.ending(result)
