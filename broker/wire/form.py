"""The text fields of a ``multipart/form-data`` body, one parse for both sides: the gateway reads
an image edit's ``n`` from it (:func:`broker.wire.n.request_n`) and ``serve`` refuses a body that
is not a complete form before it is forwarded (:func:`broker.proxy.multipart.form_fields`).

It parses with python-multipart, the parser of the worker's (Starlette) forms, so a field reads the
same here as where the form is served.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from python_multipart.multipart import MultipartParser, MultipartState, parse_options_header

__all__ = ["FormScan", "scan_form_fields"]


@dataclass(frozen=True, slots=True)
class FormScan:
    """What :func:`scan_form_fields` read.

    Attributes:
        fields: ``{name: [values]}`` of the text (non-file) parts that were read whole, in
            order (UTF-8, invalid bytes replaced).
        problem: why the body is not a complete form (no boundary in the content type, a
            parse error, no closing boundary); ``None`` when it is one.
    """

    fields: dict[str, list[str]] = field(default_factory=dict)
    problem: str | None = None


def scan_form_fields(body: bytes, content_type: str) -> FormScan:
    """Parse a ``multipart/form-data`` body for its text fields (file contents are not kept).

    Args:
        body: the whole body. content_type: its ``Content-Type`` (with the ``boundary``).

    Returns:
        A :class:`FormScan`: the fields read, and the problem when the body is not a complete
        form (the fields then hold the parts read before it).
    """
    _, params = parse_options_header(content_type or "")
    boundary = params.get(b"boundary")
    if not boundary:
        return FormScan(problem="no boundary in its Content-Type")
    fields: dict[str, list[str]] = {}
    part: dict[str, Any] = {}

    def on_part_begin() -> None:
        part.update(headers={}, field=b"", value=b"", data=bytearray(), name=None, file=False)

    def on_header_field(data: bytes, start: int, end: int) -> None:
        part["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        part["value"] += data[start:end]

    def on_header_end() -> None:
        part["headers"][part["field"].lower()] = part["value"]
        part["field"], part["value"] = b"", b""
        _, disposition = parse_options_header(part["headers"].get(b"content-disposition", b""))
        part["name"] = disposition.get(b"name")
        part["file"] = b"filename" in disposition

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if not part["file"]:  # file contents are not kept
            part["data"] += data[start:end]

    def on_part_end() -> None:
        name = part["name"]
        if name is not None and not part["file"]:
            text = bytes(part["data"]).decode("utf-8", "replace")
            fields.setdefault(name.decode("utf-8", "replace"), []).append(text)

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except Exception as exc:  # noqa: BLE001 - python-multipart's errors: any means "not a form"
        return FormScan(fields, str(exc)[:200] or type(exc).__name__)
    if parser.state != MultipartState.END:
        return FormScan(fields, "it does not end with the closing boundary")
    return FormScan(fields)
