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

#: ``bytes.translate`` table: every ASCII digit to ``0``, ``[`` and ``{`` to ``[``, every other
#: byte to a space: one C pass gives the bracket count and the digit runs of a text (a run is
#: found by a substring search, several times faster than a regex, which tries the pattern at
#: every position of the text).
_SHAPE = bytes(
    0x30 if 0x30 <= b <= 0x39 else 0x5B if b in (0x5B, 0x7B) else 0x20 for b in range(256)
)
#: 19 digits in a row: an integer orjson might make a float (beyond 64 bits) could be there.
_LONG_DIGIT_RUN = b"0" * 19

#: Most ``[`` and ``{`` in a text :func:`loads_json_or_none` hands to orjson: a bound on its depth
#: far below what the stdlib parses under the recursion limit, so both parsers agree on it.
_FAST_MAX_BRACKETS = 256

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


def loads_json_fast(raw: bytes | bytearray | str) -> Any:
    """orjson's value of a JSON text when it is the stdlib's ``json.loads`` value, else
    :data:`NEEDS_STDLIB` (then parse with the stdlib, and its hooks if any: that path decides
    what the text is, including whether it is JSON at all).

    orjson parses (several times faster) a text with at most :data:`_FAST_MAX_BRACKETS` brackets
    and no run of 19 or more digits: there its value is the stdlib's (integers beyond 64 bits
    differ, orjson makes them floats; orjson parses nesting up to 1024 deep, beyond what the
    stdlib reaches under the recursion limit). Anything else (big numbers, deep or bracket-heavy
    texts, ``NaN``, lone surrogates, UTF-16 or a BOM, invalid input) is :data:`NEEDS_STDLIB`.
    The stdlib's ``parse_int`` hook is not applied: a caller with hooks checks what they change.

    Args:
        raw: the text, or its bytes (UTF-8).

    Returns:
        The parsed value, or :data:`NEEDS_STDLIB`.
    """
    if isinstance(raw, str):  # JSON digits and brackets are ASCII: their UTF-8 bytes tell
        data: bytes | bytearray = raw.encode("utf-8", "surrogatepass")
    elif isinstance(raw, bytes | bytearray):
        data = raw
    else:
        return NEEDS_STDLIB
    shape = data.translate(_SHAPE)
    if shape.count(b"[") > _FAST_MAX_BRACKETS or _LONG_DIGIT_RUN in shape:
        return NEEDS_STDLIB
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return NEEDS_STDLIB


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
