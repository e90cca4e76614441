"""The ``n`` (images per request) rule, shared by ``serve``, the gateway and the worker.

One rule so that the image count the worker makes, the gateway bills (``provider-gateway.md`` B9:
``fee = n × outputPrice``) and ``serve`` accounts (``user-broker.md`` §8, text-to-image / image
editing) cannot differ: ``n`` is a JSON integer (not a boolean, not a float such as ``2.0``, not a
string such as ``"4.00"``) from 1 to :data:`MAX_N`; absent or ``null`` means 1. In a
``multipart/form-data`` body (image edits) the field is text: plain decimal digits only.
A form with more than one ``n`` field is refused (parsers disagree on which one counts).
Anything else is refused with :class:`InvalidNError` (each server answers 400 in its own shape),
as OpenAI's image API refuses it. A server may have a smaller bound of its own (the worker's
``max_n``). :func:`request_n` applies the rule to a whole request body (JSON or multipart, parsed
with the same multipart parser as the worker's Starlette forms).
"""

from __future__ import annotations

import re
from typing import Any

from broker._exceptions import InputError
from broker.wire.form import scan_form_fields
from broker.wire.json_body import loads_request_json

__all__ = [
    "DEFAULT_N",
    "MAX_N",
    "InvalidNError",
    "form_text_fields",
    "parse_n",
    "parse_n_field",
    "request_n",
]

#: ``n`` when the request has none.
DEFAULT_N = 1
#: The largest ``n`` any side accepts (the worker's ``max_n`` setting is at most this).
MAX_N = 16

_DIGITS = re.compile(r"[0-9]{1,6}")


class InvalidNError(InputError):
    """``n`` is not an integer from 1 to the bound. ``param`` is ``"n"``."""

    param = "n"


def _check_range(n: int, maximum: int) -> int:
    if not 1 <= n <= maximum:
        raise InvalidNError(f"n must be an integer between 1 and {maximum}, got {n}")
    return n


def parse_n(value: Any, *, maximum: int = MAX_N) -> int:
    """The image count of a JSON request's ``n`` value.

    Args:
        value: ``body.get("n")`` of the parsed JSON request (``None`` when absent).
        maximum: the largest accepted count (default :data:`MAX_N`).

    Returns:
        ``n`` as an int in ``[1, maximum]`` (:data:`DEFAULT_N` for ``None``).

    Raises:
        InvalidNError: a bool, float, string or other non-integer, or an integer out of range.
    """
    if value is None:
        return DEFAULT_N
    if isinstance(value, bool) or not isinstance(value, int):
        shown = repr(value) if isinstance(value, str | float | bool) else type(value).__name__
        raise InvalidNError(f"n must be an integer between 1 and {maximum}, got {shown[:40]}")
    return _check_range(value, maximum)


def parse_n_field(text: str | None, *, maximum: int = MAX_N) -> int:
    """The image count of a ``multipart/form-data`` ``n`` field (image edits).

    Args:
        text: the field's text, or ``None`` when the form has no ``n`` field.
        maximum: the largest accepted count (default :data:`MAX_N`).

    Returns:
        ``n`` as an int in ``[1, maximum]`` (:data:`DEFAULT_N` for ``None``).

    Raises:
        InvalidNError: not plain decimal digits (``"2.0"``, ``" 2"``, ``"+2"``, ``"0x2"``) or out
            of range.
    """
    if text is None:
        return DEFAULT_N
    if not isinstance(text, str) or not _DIGITS.fullmatch(text):
        raise InvalidNError(f"n must be an integer between 1 and {maximum}, got {str(text)[:40]!r}")
    return _check_range(int(text), maximum)


def form_text_fields(body: bytes, content_type: str, name: str) -> list[str]:
    """Every text (non-file) value of the field ``name`` in a ``multipart/form-data`` body
    (:func:`broker.wire.form.scan_form_fields`).

    Args:
        body: the whole body. content_type: its ``Content-Type`` (with the ``boundary``).
        name: the field name.

    Returns:
        The values in order (UTF-8, invalid bytes replaced); ``[]`` when there is none. A body
        that is not a complete form gives the values of the parts read whole before its problem.
    """
    return scan_form_fields(body, content_type).fields.get(name, [])


def request_n(body: bytes, content_type: str | None, *, maximum: int = MAX_N) -> int:
    """The image count of a whole image request body (generation or edit).

    Args:
        body: the request body as received. content_type: its ``Content-Type`` header.
        maximum: the largest accepted count.

    Returns:
        ``n`` in ``[1, maximum]``: from a JSON object by :func:`parse_n`, from a
        ``multipart/form-data`` form by :func:`parse_n_field`; :data:`DEFAULT_N` for other
        content types (the backend refuses those bodies, nothing is billed).

    Raises:
        InvalidNError: ``n`` breaks the rule, or a form has several ``n`` fields.
        InvalidJSONBodyError: a JSON body that is not valid JSON (:mod:`broker.wire.json_body`).
    """
    ctype = (content_type or "application/json").lower()
    if ctype.startswith("multipart/form-data"):
        values = form_text_fields(body, content_type or "", "n")
        if len(values) > 1:
            raise InvalidNError("n must be given at most once")
        return parse_n_field(values[0] if values else None, maximum=maximum)
    if "json" in ctype.split(";", 1)[0]:
        data = loads_request_json(body)
        return parse_n(data.get("n") if isinstance(data, dict) else None, maximum=maximum)
    return DEFAULT_N
