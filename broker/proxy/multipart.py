"""Small helpers for ``multipart/form-data`` bodies forwarded as they are (edits, transcriptions):
read a text field and insert a missing one (``user-broker.md`` §10.1 audio row, with the boundary
parsed properly, quotes included)."""

from __future__ import annotations

import re

__all__ = ["boundary_of", "ensure_field", "text_field"]


def boundary_of(content_type: str) -> str | None:
    """The ``boundary`` parameter of a ``multipart/form-data`` content type (quotes removed)."""
    match = re.search(r'boundary=("([^"]+)"|[^;\s]+)', content_type or "", re.IGNORECASE)
    if not match:
        return None
    return match.group(2) or match.group(1)


def text_field(body: bytes, content_type: str, name: str) -> str | None:
    """The value of the text field ``name`` (first occurrence), or ``None``."""
    boundary = boundary_of(content_type)
    if boundary is None:
        return None
    for part in body.split(b"--" + boundary.encode()):
        head, sep, value = part.partition(b"\r\n\r\n")
        if not sep:
            continue
        if (
            re.search(rb'name="' + re.escape(name.encode()) + rb'"(?!\w)', head)
            and b"filename=" not in head
        ):
            return value.rsplit(b"\r\n", 1)[0].decode("utf-8", "replace")
    return None


def ensure_field(body: bytes, content_type: str, name: str, value: str) -> bytes:
    """``body`` with the text field ``name=value`` appended before the closing boundary when it has
    no field ``name``; unchanged otherwise (or when it is not a well-formed multipart body)."""
    boundary = boundary_of(content_type)
    if boundary is None or text_field(body, content_type, name) is not None:
        return body
    closing = b"--" + boundary.encode() + b"--"
    idx = body.rfind(closing)
    if idx < 0:
        return body
    part = (
        b"--"
        + boundary.encode()
        + b"\r\n"
        + f'Content-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    )
    return body[:idx] + part + body[idx:]
