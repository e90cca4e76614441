"""Small helpers for ``multipart/form-data`` bodies forwarded as they are (edits, transcriptions):
check that a form is well formed before it is forwarded, read its text fields, and insert a
missing one (``user-broker.md`` §10.1 audio row, with the boundary parsed properly, quotes
included).

:func:`form_fields` parses with python-multipart (:func:`broker.wire.form.scan_form_fields`, the
parse the gateway reads an edit's ``n`` with), the parser of the worker's (Starlette) forms: a
body it cannot parse (no boundary, bytes that are not a form, no closing boundary) is refused by
``serve`` with 400 before anything is forwarded or paid, instead of reaching the provider.
"""

from __future__ import annotations

import re

from broker.proxy.errors import ProxyHTTPError
from broker.wire.form import scan_form_fields

__all__ = ["append_field", "boundary_of", "ensure_field", "form_fields"]


def boundary_of(content_type: str) -> str | None:
    """The ``boundary`` parameter of a ``multipart/form-data`` content type (quotes removed)."""
    match = re.search(r'boundary=("([^"]+)"|[^;\s]+)', content_type or "", re.IGNORECASE)
    if not match:
        return None
    return match.group(2) or match.group(1)


def _malformed(route: str, why: str) -> ProxyHTTPError:
    return ProxyHTTPError(
        f"{route}: the multipart/form-data body is malformed ({why})",
        status_code=400,
        type="invalid_request_error",
        code="invalid_multipart",
    )


def form_fields(body: bytes, content_type: str, route: str) -> dict[str, list[str]]:
    """The text (non-file) fields of a ``multipart/form-data`` body, by name, in order.

    Args:
        body: the whole body. content_type: its ``Content-Type`` (with the ``boundary``).
        route: the route's name for the message (``"images/edits"``).

    Returns:
        ``{name: [values]}`` (UTF-8, invalid bytes replaced); file fields are not included.

    Raises:
        ProxyHTTPError: 400 ``invalid_request_error`` / ``invalid_multipart`` when the content
            type has no boundary, or the body is not a complete form under it.
    """
    scan = scan_form_fields(body, content_type)
    if scan.problem is not None:
        raise _malformed(route, scan.problem)
    return scan.fields


def append_field(body: bytes, content_type: str, name: str, value: str) -> bytes:
    """``body`` with the text field ``name=value`` appended before the closing boundary
    (unchanged when it has no closing boundary)."""
    boundary = boundary_of(content_type)
    if boundary is None:
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


def ensure_field(
    body: bytes, content_type: str, fields: dict[str, list[str]], name: str, value: str
) -> bytes:
    """``body`` with the text field ``name=value`` appended before the closing boundary when its
    ``fields`` (:func:`form_fields` of ``body``) have no field ``name``; unchanged otherwise."""
    return body if name in fields else append_field(body, content_type, name, value)
