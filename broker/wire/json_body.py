"""The one JSON parse every server applies to a request body (``serve``, the gateway, the worker).

:func:`loads_request_json` parses with orjson (no recursion: a body of 100 000 nested arrays
cannot exhaust the C stack) and refuses what the handlers cannot process safely: invalid UTF-8, lone
UTF-16 surrogates (``"\\ud800"``, which cannot be encoded again), ``NaN``/``Infinity`` and nesting
deeper than :data:`MAX_JSON_DEPTH`. Integers beyond 64 bits are parsed as floats (orjson), which
the integer fields (``n``, ``max_tokens``...) refuse. The errors are :class:`InvalidJSONBodyError`
(an ``InputError``): every server answers 400 in its own shape.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from broker._exceptions import InputError

__all__ = [
    "MAX_JSON_DEPTH",
    "NEEDS_STDLIB",
    "InvalidJSONBodyError",
    "json_depth",
    "loads_json_fast",
    "loads_json_or_none",
    "loads_request_json",
]

#: Deepest nesting :func:`loads_json_fast` takes from orjson: far below what the stdlib parses
#: under the recursion limit (orjson parses up to 1024), so both parsers agree on what is JSON.
_FAST_MAX_DEPTH = 256
#: orjson makes an integer literal beyond 64 bits a float of at least this magnitude.
_BIG_FLOAT = float(2**63)

#: Deepest nesting of arrays/objects accepted in a request body (OpenAI bodies, JSON schemas of
#: tools included, stay far below; deeper values could overflow recursive code downstream).
MAX_JSON_DEPTH = 64


class InvalidJSONBodyError(InputError):
    """The request body is not JSON a server accepts. ``code`` is ``"invalid_json"`` or
    ``"json_too_deep"``."""

    def __init__(self, message: str, *, code: str = "invalid_json") -> None:
        super().__init__(message)
        self.code = code


def json_depth(value: Any, *, limit: int | None = None) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0, ``[]`` is 1, ``[[1]]`` is 2).

    Iterative (no recursion). With ``limit``, stops as soon as the depth exceeds it and returns
    ``limit + 1``.
    """
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        depth += 1
        if depth > deepest:
            deepest = depth
            if limit is not None and deepest > limit:
                return deepest
        stack.extend((child, depth) for child in children if isinstance(child, dict | list))
    return deepest


def _brackets(raw: bytes | bytearray | memoryview | str) -> int:
    """How many ``[`` and ``{`` the text holds (in strings too): a bound on its nesting depth,
    counted at C speed, so that the depth is walked only for a body that could be too deep."""
    if isinstance(raw, memoryview):
        raw = raw.tobytes()
    if isinstance(raw, str):
        return raw.count("[") + raw.count("{")
    return raw.count(b"[") + raw.count(b"{")


def loads_request_json(
    raw: bytes | bytearray | memoryview | str, *, max_depth: int = MAX_JSON_DEPTH
) -> Any:
    """Parse a request body.

    Args:
        raw: the body bytes (UTF-8) or text.
        max_depth: deepest accepted array/object nesting (default :data:`MAX_JSON_DEPTH`).

    Returns:
        The parsed value (dict, list, str, int, float, bool or None).

    Raises:
        InvalidJSONBodyError: not valid JSON or not valid UTF-8, a lone surrogate escape, ``NaN``,
            or deeper than ``max_depth`` (``code == "json_too_deep"``). The message is one line
            and does not repeat the body.
    """
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        reason = str(exc).split(":", 1)[0]
        if "depth" in reason or "recursion" in reason:
            raise InvalidJSONBodyError(
                f"request body nests deeper than {max_depth} levels", code="json_too_deep"
            ) from None
        if "surrogate" in reason:
            message = "request body is not valid JSON (lone UTF-16 surrogate in a string)"
        elif "UTF-8" in reason:
            message = "request body is not valid UTF-8"
        else:
            message = "request body is not valid JSON"
        raise InvalidJSONBodyError(message) from None
    if (
        isinstance(value, dict | list)
        and _brackets(raw) > max_depth
        and json_depth(value, limit=max_depth) > max_depth
    ):
        raise InvalidJSONBodyError(
            f"request body nests deeper than {max_depth} levels", code="json_too_deep"
        )
    return value


#: What :func:`loads_json_fast` returns when only the stdlib's parser gives the value.
NEEDS_STDLIB: Any = object()


def _orjson_value_check(value: Any) -> int:
    """How an orjson value compares with the stdlib's value of the same text: ``0`` the same,
    ``1`` the same but it holds an integer ``0`` (whose text may be ``-0``), ``-1`` maybe not
    (a float of magnitude :data:`_BIG_FLOAT` or more, orjson's form of an integer literal beyond
    64 bits, a float literal that large being rare; or nesting deeper than
    :data:`_FAST_MAX_DEPTH`). One iterative walk over the containers (no recursion)."""
    zero = 0
    stack: list[tuple[Any, int]] = [([value], -1)]
    while stack:
        node, depth = stack.pop()
        if depth >= _FAST_MAX_DEPTH:
            return -1
        for item in node.values() if type(node) is dict else node:
            kind = type(item)
            if kind is float:
                if not -_BIG_FLOAT < item < _BIG_FLOAT:
                    return -1
            elif kind is int:
                if item == 0:
                    zero = 1
            elif kind is dict or kind is list:
                stack.append((item, depth + 1))
    return zero


def loads_json_fast(raw: bytes | bytearray | str, *, negative_zero: bool = False) -> Any:
    """orjson's value of a JSON text when it is the stdlib's ``json.loads`` value, else
    :data:`NEEDS_STDLIB` (then parse with the stdlib, and its hooks if any: that path decides
    what the text is, including whether it is JSON at all).

    orjson parses several times faster, and its value is the stdlib's but for integers beyond
    64 bits (orjson makes them floats) and nesting between the stdlib's recursion limit and
    orjson's 1024: a value with a float of magnitude ``2**63`` or more, or nested deeper than
    :data:`_FAST_MAX_DEPTH`, is :data:`NEEDS_STDLIB` (checked on the value, without a scan of
    the text); so is a text orjson refuses (``NaN``, lone surrogates, UTF-16 or a BOM, invalid
    input).

    Args:
        raw: the text, or its bytes (UTF-8).
        negative_zero: the caller's stdlib parse reads the integer ``-0`` apart from ``0`` (a
            ``parse_int`` hook; orjson reads both as ``0``): a value with an integer ``0``
            whose text holds ``-0`` is then :data:`NEEDS_STDLIB`.

    Returns:
        The parsed value, or :data:`NEEDS_STDLIB`.
    """
    if not isinstance(raw, str | bytes | bytearray):
        return NEEDS_STDLIB
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return NEEDS_STDLIB
    check = _orjson_value_check(value)
    if check < 0 or (check and negative_zero and ("-0" if isinstance(raw, str) else b"-0") in raw):
        return NEEDS_STDLIB
    return value


def loads_json_or_none(raw: bytes | bytearray | str) -> Any:
    """Parse a body another party sent (a provider's or backend's answer, a job document, a
    service's ``additionalInfo``) that may or may not be JSON; ``None`` when it is not.

    The value is the stdlib parser's (the same numbers as the fee rules read: big integers exact,
    ``NaN`` and ``Infinity`` accepted), with every way it can fail caught: invalid JSON or UTF-8,
    and ``RecursionError`` for nesting deeper than the interpreter's recursion limit, which a
    hostile body of 100 000 nested arrays reaches (uncaught, it became a 500 and left the answer
    unaccounted). orjson parses first where its value is the stdlib's
    (:func:`loads_json_fast`: these bodies are parsed on every request).

    Args:
        raw: the body bytes (UTF-8) or text.

    Returns:
        The parsed value, or ``None``.
    """
    value = loads_json_fast(raw)
    if value is not NEEDS_STDLIB:
        return value
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError, TypeError):
        return None
