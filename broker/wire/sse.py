"""Server-Sent-Event streams: the one ``data:`` parser and what both sides read from a stream.

``serve`` (while relaying), the gateway (billing a finished stream, B9) and the user-side chat-id
lookup (§8.1) read the same things from an SSE answer, by the same rules:

* the events (:class:`SSEDecoder`): chunks may split anywhere (inside a UTF-8 character,
  between ``\\r`` and ``\\n``, inside a field name); lines end with ``\\n``, ``\\r\\n`` or ``\\r``;
  an event ends at a blank line and its ``data:`` lines are joined with ``\\n`` (WHATWG HTML,
  "Server-sent events", event-stream interpretation); ``[DONE]`` and non-objects carry nothing.
  Each event also comes with its raw bytes as received (:class:`SSEEvent`), so that ``serve``
  relays the provider's bytes unchanged, event by event;
* the ``usage`` object: the last event whose ``usage`` is an object wins (the final chunk carries it
  when ``stream_options.include_usage`` is set): :class:`UsageStreamCollector`;
* the chat id: the ``id`` of the first event that has a non-blank one: :class:`SSEChatIdExtractor`;
* the generated text (the gateway's fallback when there is no usage, B9): chat deltas
  ``choices[].delta.content`` per choice index and transcription deltas (a top-level string
  ``delta``): :func:`event_text_parts`.

Each consumer can be fed raw chunks (``feed`` / ``close``) or, when the caller already parses every
event once for several purposes (``serve``), one decoded object at a time (``observe``), so a stream
is never parsed twice. :func:`summarize_sse` reads all three in one pass. Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, NamedTuple

from broker.wire.chat_id import chat_id_of
from broker.wire.json_body import loads_json_or_none

__all__ = [
    "SSEChatIdExtractor",
    "SSEDecoder",
    "SSEEvent",
    "SSEStreamSummary",
    "SSESummary",
    "UsageStreamCollector",
    "chat_id_from_sse",
    "event_text",
    "event_text_parts",
    "is_done",
    "parse_sse_json",
    "summarize_sse",
]

_EOL = re.compile(rb"[\r\n]")
_CR, _LF, _COLON = 13, 10, 58


class SSEEvent(NamedTuple):
    """One event of a stream as received (:meth:`SSEDecoder.feed_events`).

    Attributes:
        raw: the event's bytes exactly as they arrived, through the line end of the blank line
            that ends it (for an unterminated last event: whatever arrived). The ``raw`` of the
            events of a stream, in order, concatenate to the whole stream.
        data: its ``data:`` lines joined with ``"\\n"``; ``None`` when it has none (a comment, a
            stray blank line, an event of other fields only, the ``\\n`` that completed a
            ``\\r\\n`` which had ended the previous event).
    """

    raw: bytes
    data: str | None


class SSEDecoder:
    """Feed raw stream chunks, get back each completed event: its ``data`` payload (:meth:`feed`)
    or its raw bytes and payload (:meth:`feed_events`, for a relay that passes the bytes on).

    The lines are cut in the raw bytes (UTF-8 never has a ``\\r`` or ``\\n`` byte inside a
    character), so an event's bytes are known exactly; each ``data:`` value is decoded as UTF-8
    (malformed bytes become U+FFFD). A ``\\r`` at the end of a chunk ends its line at once; a
    ``\\n`` at the start of the next chunk then completes that line end (no extra blank line).

    Example::

        dec = SSEDecoder()
        for chunk in response.iter_bytes():
            for data in dec.feed(chunk):
                ...
        tail = dec.close()          # an unterminated last event, if any
    """

    __slots__ = ("_cr", "_data", "_head", "_partial", "line_end")

    def __init__(self) -> None:
        self._head: list[bytes] = []  # the current event's bytes from earlier chunks
        self._partial: list[bytes] = []  # the current line's bytes from earlier chunks (no end)
        self._data: list[str] = []  # the current event's data lines
        self._cr = False  # the last byte seen was a ``\r`` that ended a line
        #: the line end of the blank line that ended the latest event (``b"\\n"`` until one has)
        self.line_end = b"\n"

    def feed(self, chunk: bytes | str) -> list[str]:
        """Consume one chunk (bytes, or text: encoded as UTF-8); return the data payloads of the
        events it completed."""
        return self._scan(chunk, False)  # type: ignore[return-value]

    def feed_events(self, chunk: bytes | str) -> list[SSEEvent]:
        """Consume one chunk; return the events it completed, each with its raw bytes (including
        data-less ones, so that nothing of the stream is left out)."""
        return self._scan(chunk, True)

    def close(self) -> list[str]:
        """Flush: treat the end of the stream as the end of the current line and event."""
        return [e.data for e in self.close_events() if e.data is not None]

    def close_events(self) -> list[SSEEvent]:
        """End of stream: the unterminated last event (its bytes as they arrived, its data as
        if it had been ended), if anything is left."""
        raw = b"".join(self._head)
        self._head = []
        if self._partial:
            self._line(b"".join(self._partial))
            self._partial = []
        data = "\n".join(self._data) if self._data else None
        self._data = []
        self._cr = False
        return [SSEEvent(raw, data)] if raw else []

    def _scan(self, chunk: bytes | str, keep_raw: bool) -> list[Any]:
        """The events ``chunk`` completes: :class:`SSEEvent` items (``keep_raw``), else only the
        data payloads (``str``)."""
        if not isinstance(chunk, bytes | bytearray):
            chunk = chunk.encode("utf-8", "surrogatepass")
        if not chunk:
            return []
        events: list[Any] = []
        start = pos = 0  # start: of the current event's bytes in this chunk; pos: of its line
        if self._cr:
            self._cr = False
            if chunk[0] == _LF:  # the rest of a ``\r\n``
                pos = 1
                if not self._head:  # that ``\r\n`` ended an event: this byte is its own
                    self.line_end = b"\r\n"
                    start = 1
                    if keep_raw:
                        events.append(SSEEvent(chunk[:1], None))
        search = _EOL.search
        match = search(chunk, pos)
        if match is None:  # no line end: keep the piece (joined once a line ends)
            if pos < len(chunk):
                self._partial.append(chunk[pos:] if pos else chunk)
            if start < len(chunk):
                self._head.append(chunk[start:] if start else chunk)
            return events
        size = len(chunk)
        line_op = self._line
        while match is not None:
            idx = match.start()
            end = idx + 1
            if chunk[idx] == _CR:
                if end < size:
                    if chunk[end] == _LF:
                        end += 1
                else:
                    self._cr = True
            if self._partial:
                self._partial.append(chunk[pos:idx])
                line = b"".join(self._partial)
                self._partial = []
            else:
                line = chunk[pos:idx]
            pos = end
            if line:
                line_op(line)
            else:  # a blank line: the event ends here
                if self._data:
                    data: str | None = "\n".join(self._data)
                    self._data = []
                else:
                    data = None
                self.line_end = chunk[idx:end]
                if keep_raw:
                    raw = chunk[start:end]
                    if self._head:
                        self._head.append(raw)
                        raw = b"".join(self._head)
                    events.append(SSEEvent(raw, data))
                elif data is not None:
                    events.append(data)
                self._head = []
                start = end
            match = search(chunk, pos)
        if pos < size:
            self._partial.append(chunk[pos:])
        if start < size:
            self._head.append(chunk[start:] if start else chunk)
        return events

    def _line(self, line: bytes) -> None:
        if line[0] == _COLON:  # a comment
            return
        if line.startswith(b"data"):
            if len(line) == 4:  # "data" alone: an empty value
                self._data.append("")
            elif line[4] == _COLON:
                value = line[6:] if line[5:6] == b" " else line[5:]
                self._data.append(value.decode("utf-8", "replace"))


def is_done(data: str) -> bool:
    """Whether an event's data is the stream's terminating ``[DONE]`` (blanks around it allowed)."""
    return len(data) < 64 and data.strip() == "[DONE]"


def parse_sse_json(data: str) -> dict[str, Any] | None:
    """Decode one event's data as a JSON object; ``None`` for ``[DONE]``, non-JSON (or too deeply
    nested) or non-objects."""
    if is_done(data):
        return None
    obj = loads_json_or_none(data)
    return obj if isinstance(obj, dict) else None


def event_text_parts(obj: dict[str, Any]) -> list[tuple[int, str]]:
    """The generated text an event carries, as ``(choice index, text)`` pairs: each chat delta
    (``choices[].delta.content`` string; the index is the choice's ``index``, else its position)
    and a transcription delta (a top-level string ``delta``, index 0). Entries of the wrong type are
    skipped."""
    parts: list[tuple[int, str]] = []
    choices = obj.get("choices")
    if isinstance(choices, list):
        for position, choice in enumerate(choices):
            delta = choice.get("delta") if isinstance(choice, dict) else None
            content = delta.get("content") if isinstance(delta, dict) else None
            if isinstance(content, str):
                index = choice.get("index")
                ok = isinstance(index, int) and not isinstance(index, bool)
                parts.append((index if ok else position, content))
    delta = obj.get("delta")
    if isinstance(delta, str):
        parts.append((0, delta))
    return parts


def event_text(obj: dict[str, Any]) -> str:
    """The texts of :func:`event_text_parts`, concatenated in order; ``""`` when none."""
    return "".join(text for _, text in event_text_parts(obj))


def _as_chunks(stream: bytes | str | Iterable[bytes | str]) -> Iterable[bytes | str]:
    return [stream] if isinstance(stream, bytes | bytearray | str) else stream


class _EventReader:
    """Decode raw chunks into event objects and hand each to :meth:`observe`."""

    def __init__(self) -> None:
        self._decoder = SSEDecoder()

    def observe(self, obj: dict[str, Any]) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _handle(self, events: list[str]) -> None:
        for data in events:
            obj = parse_sse_json(data)
            if obj is not None:
                self.observe(obj)

    def _feed(self, chunk: bytes | str) -> None:
        self._handle(self._decoder.feed(chunk))

    def _close(self) -> None:
        self._handle(self._decoder.close())


class UsageStreamCollector(_EventReader):
    """Collect the ``usage`` object of an SSE stream (the last event that carries one wins).

    Feed raw chunks as they arrive (split anywhere), or decoded events with :meth:`observe`;
    afterwards ``usage`` is the dict or ``None``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.usage: dict[str, Any] | None = None

    def feed(self, chunk: bytes | str) -> None:
        """Consume one chunk of the stream."""
        self._feed(chunk)

    def close(self) -> dict[str, Any] | None:
        """End of stream; returns :attr:`usage`."""
        self._close()
        return self.usage

    def feed_all(self, chunks: Iterable[bytes | str]) -> dict[str, Any] | None:
        """Feed every chunk, close, and return :attr:`usage`."""
        for chunk in chunks:
            self.feed(chunk)
        return self.close()

    def observe(self, obj: dict[str, Any]) -> None:
        """Consume one event already decoded as a JSON object."""
        usage = obj.get("usage")
        if isinstance(usage, dict):
            self.usage = usage


class SSEChatIdExtractor(_EventReader):
    """Incremental chat-ID finder for an SSE stream: feed chunks as they arrive.

    ``chat_id`` becomes the ``id`` of the first ``data:`` event (JSON object) that has a non-blank
    one and then never changes; later events are not parsed. Chunks may split anywhere.
    """

    def __init__(self) -> None:
        super().__init__()
        self.chat_id: str | None = None

    def feed(self, chunk: bytes | str) -> str | None:
        """Consume a chunk; return the chat ID found so far (or ``None``)."""
        if self.chat_id is None:
            self._feed(chunk)
        return self.chat_id

    def close(self) -> str | None:
        """End of stream: flush an unterminated last event; return the chat ID (or ``None``)."""
        if self.chat_id is None:
            self._close()
        return self.chat_id

    def observe(self, obj: dict[str, Any]) -> str | None:
        """Consume one event already decoded as a JSON object; return the chat ID so far."""
        if self.chat_id is None:
            self.chat_id = chat_id_of(obj.get("id"))
        return self.chat_id

    def _handle(self, events: list[str]) -> None:
        for data in events:
            if self.chat_id is not None:
                return
            obj = parse_sse_json(data)
            if obj is not None:
                self.observe(obj)


def chat_id_from_sse(stream: bytes | str | Iterable[bytes | str]) -> str | None:
    """The ``id`` of the first SSE ``data:`` event that has one, from a whole stream or chunks.

    Args:
        stream: the raw stream (bytes/str) or its chunks.

    Returns:
        The chat id, or ``None``.
    """
    extractor = SSEChatIdExtractor()
    for chunk in _as_chunks(stream):
        if extractor.feed(chunk):
            return extractor.chat_id
    return extractor.close()


class SSESummary(NamedTuple):
    """What :func:`summarize_sse` reads from a stream.

    Attributes:
        usage: the last ``usage`` object, or ``None``.
        chat_id: the first non-blank ``id``, or ``None``.
        text: the generated text: per choice index (:func:`event_text_parts`) the deltas
            concatenated, the choices' texts joined with ``"\\n"`` in index order.
    """

    usage: dict[str, Any] | None
    chat_id: str | None
    text: str


class SSEStreamSummary(_EventReader):
    """Usage, chat id and generated text of one stream, each event parsed once."""

    def __init__(self) -> None:
        super().__init__()
        self.usage: dict[str, Any] | None = None
        self.chat_id: str | None = None
        self._texts: dict[int, list[str]] = {}

    def feed(self, chunk: bytes | str) -> None:
        """Consume one chunk of the stream."""
        self._feed(chunk)

    def observe(self, obj: dict[str, Any]) -> None:
        """Consume one event already decoded as a JSON object."""
        usage = obj.get("usage")
        if isinstance(usage, dict):
            self.usage = usage
        if self.chat_id is None:
            self.chat_id = chat_id_of(obj.get("id"))
        for index, text in event_text_parts(obj):
            self._texts.setdefault(index, []).append(text)

    def close(self) -> SSESummary:
        """End of stream; returns the :class:`SSESummary`."""
        self._close()
        text = "\n".join("".join(parts) for _, parts in sorted(self._texts.items()))
        return SSESummary(self.usage, self.chat_id, text)


def summarize_sse(stream: bytes | str | Iterable[bytes | str]) -> SSESummary:
    """Usage, chat id and generated text of a whole stream (or its chunks), in one pass.

    Args:
        stream: the raw (decoded, not content-coded) SSE bytes or text, or its chunks.

    Returns:
        :class:`SSESummary`.
    """
    summary = SSEStreamSummary()
    for chunk in _as_chunks(stream):
        summary.feed(chunk)
    return summary.close()
