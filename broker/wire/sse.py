"""Server-Sent-Event streams: the one ``data:`` parser and what both sides read from a stream.

``serve`` (while relaying), the gateway (billing a finished stream, B9) and the user-side chat-id
lookup (§8.1) read the same things from an SSE answer, by the same rules:

* the event payloads (:class:`SSEDecoder`): chunks may split anywhere (inside a UTF-8 character,
  between ``\\r`` and ``\\n``, inside a field name); lines end with ``\\n``, ``\\r\\n`` or ``\\r``;
  an event ends at a blank line and its ``data:`` lines are joined with ``\\n`` (WHATWG HTML,
  "Server-sent events", event-stream interpretation); ``[DONE]`` and non-objects carry nothing;
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

import codecs
import re
from collections.abc import Iterable
from typing import Any, NamedTuple

from broker.wire.chat_id import chat_id_of
from broker.wire.json_body import loads_json_or_none

__all__ = [
    "SSEChatIdExtractor",
    "SSEDecoder",
    "SSEStreamSummary",
    "SSESummary",
    "UsageStreamCollector",
    "chat_id_from_sse",
    "event_text",
    "event_text_parts",
    "parse_sse_json",
    "summarize_sse",
]

_EOL = re.compile(r"[\r\n]")


class SSEDecoder:
    """Feed raw stream chunks, get back the ``data`` payload of each completed event.

    Example::

        dec = SSEDecoder()
        for chunk in response.iter_bytes():
            for data in dec.feed(chunk):
                ...
        tail = dec.close()          # an unterminated last event, if any
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._buffer = ""
        self._pending: list[str] = []  # text after ``_buffer`` that holds no line end yet
        self._data: list[str] = []
        self._pending_cr = False

    def feed(self, chunk: bytes | str) -> list[str]:
        """Consume one chunk (bytes or text); return the data payloads of events it completed."""
        text = self._decoder.decode(chunk) if isinstance(chunk, bytes | bytearray) else chunk
        if self._pending_cr and text.startswith("\n"):
            text = text[1:]
        self._pending_cr = False
        search = _EOL.search
        if search(text) is None:  # no line ends: keep the piece (joined once a line ends)
            if text:
                self._pending.append(text)
            return []
        if self._pending:
            self._pending.append(text)
            text = "".join(self._pending)
            self._pending = []
        buf = self._buffer + text if self._buffer else text
        size = len(buf)
        events: list[str] = []
        pos = 0  # lines are cut by index: linear in the chunk, however many lines it holds
        while True:
            match = search(buf, pos)
            if match is None:
                break
            idx = match.start()
            line = buf[pos:idx]
            end = idx + 1
            if buf[idx] == "\r":
                if end < size:
                    if buf[end] == "\n":
                        end += 1
                else:
                    self._pending_cr = True
            pos = end
            event = self._line(line)
            if event is not None:
                events.append(event)
        self._buffer = buf[pos:]
        return events

    def close(self) -> list[str]:
        """Flush: treat the end of the stream as the end of the current line and event."""
        events: list[str] = []
        tail = self._decoder.decode(b"", final=True)
        self._buffer += "".join(self._pending) + tail
        self._pending = []
        if self._buffer:
            event = self._line(self._buffer)
            self._buffer = ""
            if event is not None:
                events.append(event)
        if self._data:
            events.append("\n".join(self._data))
            self._data = []
        return events

    def _line(self, line: str) -> str | None:
        if line == "":
            if not self._data:
                return None
            data = "\n".join(self._data)
            self._data = []
            return data
        if line.startswith(":"):
            return None
        field, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if field == "data":
            self._data.append(value)
        return None


def parse_sse_json(data: str) -> dict[str, Any] | None:
    """Decode one event's data as a JSON object; ``None`` for ``[DONE]``, non-JSON (or too deeply
    nested) or non-objects."""
    if data.strip() == "[DONE]":
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
