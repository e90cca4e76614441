"""Incremental decoding of Server-Sent-Event streams into ``data:`` payloads.

Shared by the chat-ID and usage extractors. Chunks may split anywhere (inside a UTF-8 character,
between ``\\r`` and ``\\n``, inside a field name); lines end with ``\\n``, ``\\r\\n`` or ``\\r``; an
event ends at a blank line and its ``data:`` lines are joined with ``\\n`` (WHATWG HTML, "Server-sent
events", event-stream interpretation).
"""

from __future__ import annotations

import codecs
import json
import re
from typing import Any

__all__ = ["SSEDecoder", "parse_sse_json"]

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
        self._data: list[str] = []
        self._pending_cr = False

    def feed(self, chunk: bytes | str) -> list[str]:
        """Consume one chunk (bytes or text); return the data payloads of events it completed."""
        text = self._decoder.decode(chunk) if isinstance(chunk, bytes | bytearray) else chunk
        if self._pending_cr and text.startswith("\n"):
            text = text[1:]
        self._pending_cr = False
        self._buffer += text
        events: list[str] = []
        while True:
            match = _EOL.search(self._buffer)
            if match is None:
                break
            idx = match.start()
            line = self._buffer[:idx]
            end = idx + 1
            if self._buffer[idx] == "\r":
                if end < len(self._buffer):
                    if self._buffer[end] == "\n":
                        end += 1
                else:
                    self._pending_cr = True
            self._buffer = self._buffer[end:]
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def close(self) -> list[str]:
        """Flush: treat the end of the stream as the end of the current line and event."""
        events: list[str] = []
        tail = self._decoder.decode(b"", final=True)
        self._buffer += tail
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
    """Decode one event's data as a JSON object; ``None`` for ``[DONE]``, non-JSON or non-objects."""
    if data.strip() == "[DONE]":
        return None
    try:
        obj = json.loads(data)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None
