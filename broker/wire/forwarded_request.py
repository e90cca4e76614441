"""The request body "as forwarded" by the gateway, which the B7 request hash covers
(``provider-gateway.md`` B5, B7).

The reference gateway decodes a JSON request into a Go ``map[string]interface{}``, applies the B5
rewrites and re-marshals it with ``encoding/json``. This module reproduces that form so that both
sides hash the same bytes:

* objects: keys sorted by their UTF-8 bytes, compact (no spaces); arrays keep their order;
* strings: ``"`` and ``\\`` escaped, ``\\b \\f \\n \\r \\t`` short escapes (Go ≥ 1.22), other
  control characters ``\\u00XX``; ``<``, ``>``, ``&`` as ``\\u003c \\u003e \\u0026`` and U+2028 /
  U+2029 as ``\\u2028`` / ``\\u2029`` (Go's HTML-safe escaping); other characters as raw UTF-8; a
  lone surrogate (``"\\ud800"``) becomes U+FFFD, as Go's decoder makes it;
* numbers: a Go ``float64`` printed by ``strconv`` with the shortest round-trip digits, fixed
  notation for ``1e-6 ≤ |x| < 1e21``, else ``1e+21`` / ``1e-7`` exponent form (so ``1.0`` → ``1``,
  ``1e2`` → ``100``).

Where a number cannot be forwarded exactly (an integer literal whose value a ``float64`` cannot
hold, such as ``2**53 + 1``, or one outside its range, NaN and infinities; a literal such as
``41305553579641070`` that *is* the exact value of its float64 passes) the request is refused with
:class:`ForwardedRequestError` instead of being silently changed: the gateway would forward a
different number than the caller sent.

The form is a fixed point: re-marshalling it (by Go with ``float64`` or with ``json.Number``, or by
:func:`canonical_json`) gives the same bytes. ``serve`` therefore sends this form and hashes it, and
our gateway forwards (and hashes) the same form of whatever it receives, so the request hash can be
reproduced whichever gateway is in between.

Rewrites (B5): chatbot ``/chat/completions`` with ``"stream": true`` gets
``stream_options.include_usage = true`` unless it is already ``true``
(:func:`apply_chat_stream_rewrite`; a ``stream`` that is not a boolean is refused);
text-to-image adds the query ``wait=true``, which does not change the body. Multipart bodies
(``/images/edits``, ``/audio/transcriptions``) are forwarded as received: their hash is the hash
of the bytes sent.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from json.encoder import encode_basestring
from typing import Any

import orjson

from broker._exceptions import InputError
from broker.wire.json_body import NEEDS_STDLIB, loads_json_fast

__all__ = [
    "MAX_DEPTH",
    "ForwardedRequestError",
    "apply_chat_stream_rewrite",
    "canonical_json",
    "check_chat_stream_flag",
    "forwarded_json_body",
    "go_float",
    "is_json_content_type",
]


class ForwardedRequestError(InputError):
    """A JSON request that cannot be forwarded byte-exactly (see the module docstring)."""


def is_json_content_type(content_type: str | None) -> bool:
    """Whether a ``Content-Type`` names a JSON body (``application/json``, ``…+json``)."""
    return "json" in (content_type or "").lower()


def go_float(value: float) -> str:
    """``value`` as Go's ``encoding/json`` prints a ``float64``: shortest round-trip digits
    (Python's ``repr`` digits are the same), fixed notation for ``1e-6 <= |x| < 1e21``, else
    exponent form with a sign and at least one digit (``1e+21``, ``1.5e-7``, ``1e-10``).

    Raises:
        ForwardedRequestError: NaN or an infinity (Go refuses them too).
    """
    if math.isnan(value) or math.isinf(value):
        raise ForwardedRequestError("NaN and infinite numbers cannot be sent as JSON")
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    if value == 0:
        return sign + "0"
    exact = Decimal(repr(abs(value))).normalize()
    digits = "".join(map(str, exact.as_tuple().digits))
    point = len(digits) + int(exact.as_tuple().exponent)  # value = 0.digits × 10^point
    if 1e-6 <= abs(value) < 1e21:
        if point <= 0:
            return sign + "0." + "0" * -point + digits
        if point >= len(digits):
            return sign + digits + "0" * (point - len(digits))
        return sign + digits[:point] + "." + digits[point:]
    e = point - 1
    mantissa = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    return f"{sign}{mantissa}e{'-' if e < 0 else '+'}{abs(e)}"


#: What Go escapes beyond what the stdlib's ``encode_basestring`` (``json.dumps(...,
#: ensure_ascii=False)``) escapes (``"``, ``\\``, ``\b \f \n \r \t`` and other control
#: characters as ``\u00xx``, the same forms as Go's), and lone surrogates, which Go's decoder has
#: made U+FFFD.
_GO_EXTRA = re.compile("[<>&\u2028\u2029\ud800-\udfff]")
_GO_EXTRA_FORMS = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def _go_extra(match: re.Match[str]) -> str:
    return _GO_EXTRA_FORMS.get(match.group(), "\ufffd")


def _go_escaped(text: str) -> str:
    """JSON text written by the stdlib's encoder with Go's extra escapes applied (HTML-safe forms,
    U+FFFD for lone surrogates): these characters only occur inside strings."""
    return _GO_EXTRA.sub(_go_extra, text) if _GO_EXTRA.search(text) else text


def _go_string(text: str) -> str:
    """``text`` as Go's ``encoding/json`` writes a string (module docstring): the stdlib's C
    encoder, then Go's HTML-safe escapes and U+FFFD for lone surrogates (linear in the text)."""
    return _go_escaped(encode_basestring(text))


_SURROGATE = re.compile("[\ud800-\udfff]")


def _go_key(text: str) -> str:
    """A key as Go's decoder would hold it (lone surrogates → U+FFFD)."""
    return _SURROGATE.sub("\ufffd", text) if _SURROGATE.search(text) else text


#: Integers up to this magnitude are exact float64 values (printed by Go in fixed notation).
_EXACT_INT = 2**53

#: Deepest nesting :func:`canonical_json` encodes (far beyond any API body; bounds the recursion).
MAX_DEPTH = 256


def _encode(value: Any, out: list[str], depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise ForwardedRequestError(f"the JSON body is nested deeper than {MAX_DEPTH} levels")
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_go_string(value))
    elif isinstance(value, int):
        if -_EXACT_INT <= value <= _EXACT_INT:  # a float64 holds it exactly: Go prints the digits
            out.append(int.__repr__(value))
            return
        try:
            text = go_float(float(value))
        except OverflowError:
            text = ""
        # Go decodes the literal to the nearest float64 and prints that: the value must survive
        if not text or Decimal(text) != value:
            raise ForwardedRequestError(
                f"the integer {str(value)[:30]} cannot be forwarded exactly (a gateway decodes "
                "numbers as float64); send it as a string"
            )
        out.append(text)
    elif isinstance(value, float):
        out.append(go_float(value))
    elif isinstance(value, dict):
        items = {}
        for key, item in value.items():  # later duplicates win, as in Go
            items[_go_key(str(key))] = item
        out.append("{")
        for i, key in enumerate(sorted(items, key=lambda k: k.encode("utf-8"))):
            if i:
                out.append(",")
            out.append(_go_string(key))
            out.append(":")
            _encode(items[key], out, depth + 1)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out, depth + 1)
        out.append("]")
    else:
        raise ForwardedRequestError(f"a {type(value).__name__} cannot be sent as JSON")


def canonical_json(value: Any) -> bytes:
    """Go ``json.Marshal`` of ``value`` decoded into ``interface{}`` (module docstring).

    Args:
        value: decoded JSON (dict/list/str/int/float/bool/None).

    Returns:
        UTF-8 bytes.

    Raises:
        ForwardedRequestError: a number that cannot be forwarded exactly, NaN/infinity, nesting
            deeper than :data:`MAX_DEPTH`, or a value that is not JSON.
    """
    if _orjson_writes_go_form(value, 0):
        try:
            raw = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
        except orjson.JSONEncodeError:  # a lone surrogate (Go's decoder made it U+FFFD; in a key
            pass  # it changes the key order) or orjson's nesting limit: the general path
        else:
            return _go_escaped_bytes(raw)
    out: list[str] = []
    _encode(value, out)
    return "".join(out).encode("utf-8")


#: Go's extra escapes in UTF-8 JSON text (U+2028 and U+2029 are ``E2 80 A8`` / ``E2 80 A9``).
#: Go's extra escapes as UTF-8 bytes (U+2028 and U+2029 are ``E2 80 A8`` / ``E2 80 A9``).
_GO_EXTRA_BYTE_FORMS = tuple((key.encode(), form.encode()) for key, form in _GO_EXTRA_FORMS.items())


def _go_escaped_bytes(raw: bytes) -> bytes:
    """UTF-8 JSON text without lone surrogates (orjson refuses them) with Go's extra escapes
    applied; these characters only occur inside strings (``bytes.replace``: a C scan each)."""
    for char, form in _GO_EXTRA_BYTE_FORMS:
        if char[:1] in raw and char in raw:  # a one-byte search first (memchr)
            raw = raw.replace(char, form)
    return raw


def _orjson_writes_go_form(value: Any, depth: int) -> bool:
    """Whether orjson (``OPT_SORT_KEYS``: compact, keys sorted by their UTF-8 bytes, characters
    beyond ASCII raw, the same string escapes as Go's) writes ``value`` as Go does, up to Go's
    extra escapes (:func:`_go_escaped_bytes`): JSON types only, floats only where their
    shortest form is Go's (:func:`_orjson_float_is_go_form`), no integer beyond a float64's
    exact range, string keys, at most :data:`MAX_DEPTH` deep. Anything else takes
    :func:`_encode`."""
    kind = type(value)
    if kind is dict:
        for key in value:
            if type(key) is not str:
                return False
        items: Any = value.values()
    elif kind is list:
        items = value
    else:
        return (
            kind is str
            or value is None
            or kind is bool
            or (kind is int and -_EXACT_INT <= value <= _EXACT_INT)
            or (kind is float and _orjson_float_is_go_form(value))
        )
    if depth >= MAX_DEPTH:
        return False
    for item in items:  # the scalars inline: most values of a body are strings
        kind = type(item)
        if kind is str or item is None or kind is bool:
            continue
        if kind is int:
            if -_EXACT_INT <= item <= _EXACT_INT:
                continue
            return False
        if kind is float:
            if _orjson_float_is_go_form(item):
                continue
            return False
        if not _orjson_writes_go_form(item, depth + 1):
            return False
    return True


def _orjson_float_is_go_form(value: float) -> bool:
    """Whether orjson prints ``value`` as Go does (:func:`go_float`): both write the shortest
    round-trip digits, and for a finite value with a fraction and ``1e-5 <= |x| < 1e16`` both in
    fixed notation. Whole values (orjson ``1.0``, Go ``1``), smaller magnitudes (orjson ``1e-6``,
    Go ``0.000001``; larger ones are all whole), NaN and infinities are not."""
    return 1e-5 <= abs(value) < 1e16 and not value.is_integer()


def apply_chat_stream_rewrite(data: dict[str, Any]) -> bool:
    """B5 chatbot rewrite, in place: ``"stream": true`` gets ``stream_options.include_usage =
    true`` (other ``stream_options`` entries kept; a non-object ``stream_options`` is replaced).

    The reference adds it only when ``include_usage`` is absent; we also set it over any other
    value (``false``, ``"false"``, ``0``...): the fee of a chat is read from the stream's usage,
    and a stream without usage is billed by the words of its answer only (B9 fallback), its
    prompt free. Both sides apply this rule, so the request hash still matches, and a gateway
    that only adds an absent entry forwards the result unchanged.

    Returns:
        Whether ``data`` was changed.
    """
    if data.get("stream") is not True:
        return False
    opts = data.get("stream_options")
    if isinstance(opts, dict) and opts.get("include_usage") is True:
        return False
    data["stream_options"] = {**(opts if isinstance(opts, dict) else {}), "include_usage": True}
    return True


def check_chat_stream_flag(data: dict[str, Any]) -> None:
    """Refuse a chat request whose ``stream`` is not ``true``, ``false``, ``null`` or absent.

    A backend may read ``"true"``, ``1`` or ``"yes"`` as a stream (pydantic's lax booleans, as
    vLLM's models do) while :func:`apply_chat_stream_rewrite` only rewrites ``true``: such a
    request would be streamed without usage and billed by words only.

    Raises:
        ForwardedRequestError: ``stream`` is of another type or value.
    """
    stream = data.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise ForwardedRequestError("stream must be true, false or null")


def _reject_constant(name: str) -> Any:
    raise ForwardedRequestError(f"{name} is not a JSON number")


def _parse_int(text: str) -> int | float:
    """JSON integers; ``-0`` stays a negative zero (Go's float64 prints ``-0``)."""
    return -0.0 if text == "-0" else int(text)


def _loads(body: bytes) -> Any:
    """``json.loads(body, parse_constant=_reject_constant, parse_int=_parse_int)``: orjson where
    its value is that one (:func:`broker.wire.json_body.loads_json_fast`, which sends ``NaN``,
    big integers, deep texts, lone surrogates, non-UTF-8 encodings and, with ``negative_zero``,
    an integer ``0`` in a text holding ``-0`` to the stdlib), the stdlib with its hooks
    otherwise.

    Raises:
        ForwardedRequestError: ``NaN`` or an infinity literal. ValueError, UnicodeDecodeError,
            RecursionError: not JSON (the stdlib's errors).
    """
    data = loads_json_fast(body, negative_zero=True)
    if data is NEEDS_STDLIB:
        return json.loads(body, parse_constant=_reject_constant, parse_int=_parse_int)
    return data


def forwarded_json_body(body: bytes, *, chat_stream_rewrite: bool = False) -> bytes | None:
    """The bytes a gateway forwards for a JSON request ``body`` (B5): decoded, rewritten and
    re-marshalled in the Go form.

    Args:
        body: the JSON request body as received.
        chat_stream_rewrite: apply :func:`check_chat_stream_flag` and
            :func:`apply_chat_stream_rewrite` (chatbot ``/chat/completions``).

    Returns:
        The canonical bytes, or ``None`` when ``body`` is not a JSON object (the gateway then
        forwards it unchanged).

    Raises:
        ForwardedRequestError: the body is a JSON object that cannot be forwarded exactly, or a
            chat request's ``stream`` is not a boolean or null.
    """
    try:
        data = _loads(body)
    except ForwardedRequestError:
        raise
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    if chat_stream_rewrite:
        check_chat_stream_flag(data)
        apply_chat_stream_rewrite(data)
    return canonical_json(data)
