"""The request body "as forwarded" (B5, B7): Go ``json.Marshal`` of the decoded body, which both
``serve`` and our gateway produce, so the signed request hash can be reproduced."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.provider.forward import rewrite_request
from broker.proxy.serving_chat import prepare_chat_request
from broker.proxy.serving_images import prepare_image_request
from broker.wire.forwarded_request import (
    MAX_DEPTH,
    ForwardedRequestError,
    apply_chat_stream_rewrite,
    canonical_json,
    check_chat_stream_flag,
    forwarded_json_body,
    go_float,
)


@pytest.mark.parametrize(
    ("value", "go"),
    [
        (1.0, "1"),
        (100, "100"),
        (-2.5, "-2.5"),
        (0.1, "0.1"),
        (123456789.123, "123456789.123"),
        (1e20, "100000000000000000000"),
        (1e21, "1e+21"),
        (1.5e300, "1.5e+300"),
        (0.000001, "0.000001"),
        (1e-7, "1e-7"),
        (-1.5e-10, "-1.5e-10"),
        (5e-324, "5e-324"),
        (2.0**53, "9007199254740992"),
        (0.0, "0"),
        (-0.0, "-0"),
        (1 / 3, "0.3333333333333333"),
    ],
)
def test_numbers_print_as_go_float64(value, go):
    assert go_float(float(value)) == go


def test_go_marshal_of_a_map():
    body = {
        "z": 1,
        "a": {"y": [True, None, "x"], "b": 2.50},
        "B": "<&>",
        "é": "\u2028\u2029",
        "ctl": '\b\f\n\r\t\x01\x1f\x7f"\\',
        "lone": "\ud800",
        "": 0,
    }
    assert (
        canonical_json(body)
        == (
            '{"":0,"B":"\\u003c\\u0026\\u003e","a":{"b":2.5,"y":[true,null,"x"]},'
            '"ctl":"\\b\\f\\n\\r\\t\\u0001\\u001f\x7f\\"\\\\","lone":"\ufffd","z":1,'
            '"é":"\\u2028\\u2029"}'
        ).encode()
    )


def _go_string_per_character(text: str) -> str:
    """Go's ``encodeState.string`` (HTML-safe, Go >= 1.22), one character at a time: the oracle."""
    short = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r"}
    short |= {"\t": "\\t", "<": "\\u003c", ">": "\\u003e", "&": "\\u0026"}
    short |= {"\u2028": "\\u2028", "\u2029": "\\u2029"}
    out = ['"']
    for ch in text:
        if ch in short:
            out.append(short[ch])
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        elif 0xD800 <= ord(ch) <= 0xDFFF:
            out.append("\ufffd")
        else:
            out.append(ch)
    return "".join(out) + '"'


def test_every_character_is_written_as_go_writes_it():
    chars = [chr(c) for c in range(0x3000)] + [chr(c) for c in range(0xD7F0, 0xE010)]
    chars += ["\U0001f600", "\U0010ffff", "\ufffd", "\ufeff"]
    text = "".join(chars)
    assert canonical_json({"s": text}) == ('{"s":' + _go_string_per_character(text) + "}").encode()
    for ch in chars:  # each alone too (the fast path has a no-escape shortcut)
        assert canonical_json([ch]) == f"[{_go_string_per_character(ch)}]".encode()
    keys = {"k" + chr(0xDC00): 1, "k\ufffd": 2}  # a lone surrogate in a key becomes U+FFFD
    assert canonical_json(keys) == '{"k\ufffd":2}'.encode()  # and the later duplicate wins
    # integers: a float64's exact ones as their digits, on both sides of 2**53
    assert canonical_json([0, -1, 2**53, -(2**53), 2**53 + 2]) == (
        b"[0,-1,9007199254740992,-9007199254740992,9007199254740994]"
    )


def test_numbers_that_cannot_be_forwarded_exactly_are_refused():
    for bad in ({"seed": 2**53 + 1}, {"n": 10**400}, {"x": float("nan")}, {"x": float("inf")}):
        with pytest.raises(ForwardedRequestError):
            canonical_json(bad)
    with pytest.raises(ForwardedRequestError):
        forwarded_json_body(b'{"x": NaN}')
    with pytest.raises(ForwardedRequestError, match="nested deeper"):  # never a RecursionError
        forwarded_json_body(b'{"x":' + b"[" * 900 + b"]" * 900 + b"}")
    assert canonical_json({"seed": 2**53 + 2}) == b'{"seed":9007199254740994}'  # exact


def test_body_forms():
    assert forwarded_json_body(b'{"b": 1, "a": -0}') == b'{"a":-0,"b":1}'
    assert forwarded_json_body(b"[1, 2]") is None and forwarded_json_body(b"{bad") is None
    assert (
        forwarded_json_body(b'{"stream": true}', chat_stream_rewrite=True)
        == b'{"stream":true,"stream_options":{"include_usage":true}}'
    )
    # a client's false is overridden: a stream without usage would leave its prompt unbilled
    declined = {"stream": True, "stream_options": {"include_usage": False, "x": 1}}
    assert apply_chat_stream_rewrite(declined) is True
    assert declined["stream_options"] == {"include_usage": True, "x": 1}
    kept = {"stream": True, "stream_options": {"include_usage": True}}
    assert apply_chat_stream_rewrite(kept) is False
    assert apply_chat_stream_rewrite({"stream": "true"}) is False  # only a JSON true ...
    for flag in (b'"true"', b"1", b"[true]", b'"yes"'):  # ... and any other flag is refused
        with pytest.raises(ForwardedRequestError, match="stream must be true, false or null"):
            forwarded_json_body(b'{"stream":' + flag + b"}", chat_stream_rewrite=True)
    assert forwarded_json_body(b'{"stream":"true"}') == b'{"stream":"true"}'  # other routes
    assert forwarded_json_body(b'{"stream":null}', chat_stream_rewrite=True) == b'{"stream":null}'


def test_serve_sends_what_our_gateway_forwards():
    """``serve``'s body is a fixed point of the gateway's rewrite, so both hash the same bytes."""
    body, stream = prepare_chat_request(
        {
            "messages": [{"role": "user", "content": "<b>&</b>"}],
            "stream": True,
            "temperature": 1.0,
            "z": 1e-7,
        },
        "tiny",
    )
    assert (
        stream and rewrite_request("chatbot", "/chat/completions", body, "application/json") == body
    )
    image = prepare_image_request({"prompt": "a fox", "n": 2}, "tiny")
    assert image == b'{"model":"tiny","n":2,"prompt":"a fox","size":"512x512"}'
    assert (
        rewrite_request("text-to-image", "/images/generations", image, "application/json") == image
    )
    # a client that sends another form gets the Go form forwarded (and hashed) by the gateway
    loose = json.dumps(
        {"prompt": "a fox", "n": 2.0, "model": "tiny", "size": "512x512"}, indent=2
    ).encode()
    assert (
        rewrite_request("text-to-image", "/images/generations", loose, "application/json") == image
    )
    multipart = b'--x\r\nContent-Disposition: form-data; name="n"\r\n\r\n1\r\n--x--\r\n'
    assert (
        rewrite_request(
            "image-editing", "/images/edits", multipart, "multipart/form-data; boundary=x"
        )
        is multipart
    )


def _json_values(*, int_bound: int, max_leaves: int) -> st.SearchStrategy:
    """JSON values: null, booleans, text, integers within ``±int_bound``, finite floats, and
    lists and objects of them (at most 4 items each, ``max_leaves`` leaves in all)."""
    return st.recursive(
        st.none()
        | st.booleans()
        | st.text()
        | st.integers(min_value=-int_bound, max_value=int_bound)
        | st.floats(allow_nan=False, allow_infinity=False),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=max_leaves,
    )


_json = _json_values(int_bound=2**53, max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(), _json, max_size=5))
def test_canonical_form_is_a_fixed_point(body):
    """Re-marshalling the canonical form (as a gateway does) gives the same bytes, and the values
    survive (floats to the same float64)."""
    once = canonical_json(body)
    assert forwarded_json_body(once) == once
    assert _as_go(json.loads(once)) == _as_go(body)


def _as_go(value):
    """Numbers as the float64 a Go decoder holds."""
    if isinstance(value, dict):
        return {k: _as_go(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_as_go(v) for v in value]
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return value


_any_json = _json_values(int_bound=2**64, max_leaves=16)


def _per_value_form(value) -> bytes | None:
    """The Go form written value by value (the encoder's general path), ``None`` when refused."""
    from broker.wire.forwarded_request import _encode

    out: list[str] = []
    try:
        _encode(value, out)
    except ForwardedRequestError:
        return None
    return "".join(out).encode("utf-8")


@settings(max_examples=400, deadline=None)
@given(_any_json)
def test_the_fast_path_writes_the_same_bytes(value):
    """canonical_json hands values without big integers (and with floats only in fixed notation)
    to orjson; the bytes must be those of the general path for every value (keys with lone
    surrogates, which reorder, and escapes included), and what the general path refuses stays
    refused."""
    want = _per_value_form(value)
    if want is None:
        with pytest.raises(ForwardedRequestError):
            canonical_json(value)
    else:
        assert canonical_json(value) == want


_boundary_floats = (
    st.floats(min_value=1e-7, max_value=1e-3)
    | st.floats(min_value=1e14, max_value=1e17)
    | st.floats(min_value=-1e17, max_value=1e17)
    | st.integers(min_value=-(2**53), max_value=2**53).map(float)
    | st.sampled_from(
        [1e-5, 9.999999999999999e-6, 1.0000000000000003e-05, 1e-6, 1e16, 9999999999999998.0]
        + [4503599627370495.5, 5e-324, -0.0, 0.0, 1.7976931348623157e308]
    )
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_boundary_floats, min_size=1, max_size=6))
def test_floats_on_the_fast_path_are_written_as_go_writes_them(values):
    """A float takes the fast path only where its shortest form in fixed notation is Go's; the
    attack is a body whose float orjson and Go print differently (``1.0`` / ``1``, ``1e-6`` /
    ``0.000001``, ``1e+16`` / ``10000000000000000``): a request hash the provider would not
    reproduce."""
    body = {"temperature": values[0], "values": values}
    assert canonical_json(body) == _per_value_form(body)
    assert canonical_json(values[0]) == _per_value_form(values[0])


def test_the_fast_path_cases():
    for value in (
        {"temperature": 0.7, "top_p": 0.95, "penalty": -1.5, "whole": 2.0, "tiny": 1e-05},
        [1e-5, 9.999999999999999e-06, 1e15 + 0.5, 1e16, 123456789.123, -0.0, 0.1 + 0.2],
        {"a": "<&>\u2028\u2029\u2030\u00e9", "b": '\x00\x1f\x7f\\"'},
        {"k" + chr(0xDC00): 1, "k\ufffd": 2, "a": "<&>\u2028"},
        {"b": 1, "a": [True, None, "\ud800x"], "é": {"ü": -(2**53)}},
        {"\U0001f600": 1, "\uffff": 2},  # non-BMP sorts after U+FFFF, as in UTF-8 bytes
        [[[[[]]]]],
        {"deep": [[[[[[[[[[]]]]]]]]]]},
    ):
        assert canonical_json(value) == _per_value_form(value)
    too_deep: list = []
    for _ in range(MAX_DEPTH + 2):
        too_deep = [too_deep]
    with pytest.raises(ForwardedRequestError):
        canonical_json({"x": too_deep})


# -- the parse: orjson where its value is the stdlib's (with the hooks), the stdlib elsewhere ---

_NUMBER_TEXT = st.from_regex(
    r"\A-?(0|[1-9][0-9]{0,24})(\.[0-9]{1,19})?([eE][+-]?[0-9]{1,3})?\Z"
) | st.sampled_from(
    ["-0", "-0.0", "0", "-0e0", "-0E1", "1e400", "-1e400", "1e-400", "NaN", "Infinity"]
    + ["-Infinity", "9223372036854775807", "9223372036854775808", "18446744073709551615"]
    + ["18446744073709551616", "-9223372036854775809", "123456789012345678", "9007199254740993"]
    + ["1.0", "1E2", "0.1", "5e-324", "1.7976931348623157e308", "01", "-", "1.", ".5", "+1"]
)
_STRING_TEXT = st.builds(json.dumps, st.text(), ensure_ascii=st.booleans()) | st.sampled_from(
    ['"\\ud800"', '"\\udc00x"', '"a\\u2028<&>\\u2029"', '"2024-05-01"', '"x-0"', '"-0"', '"\t"']
)
_KEY_TEXT = st.sampled_from(['"a"', '"b"', '"n"', '"stream"', '"stream_options"']) | _STRING_TEXT
_VALUE_TEXT = st.recursive(
    _NUMBER_TEXT | _STRING_TEXT | st.sampled_from(["true", "false", "null"]),
    lambda inner: (
        st.lists(inner, max_size=4).map(lambda xs: "[" + ",".join(xs) + "]")
        | st.lists(st.tuples(_KEY_TEXT, inner), max_size=4).map(
            lambda kv: "{" + ",".join(f"{k}:{v}" for k, v in kv) + "}"
        )
    ),
    max_leaves=12,
)
_WS = st.sampled_from(["", " ", "\n", "\t ", "\r\n", "\x0b", "\u00a0"])


@st.composite
def _json_texts(draw) -> bytes:
    """JSON texts (mostly objects) with edge numbers, duplicate keys, escapes and whitespace, in
    UTF-8 and other encodings, and some that are not JSON."""
    pairs = draw(st.lists(st.tuples(_KEY_TEXT, _VALUE_TEXT), max_size=5))
    ws = draw(_WS)
    text = "{" + ws + ("," + ws).join(f"{k}{ws}:{v}" for k, v in pairs) + ws + "}"
    shape = draw(st.sampled_from(["object", "object", "object", "value", "array"]))
    if shape == "value":
        text = draw(_VALUE_TEXT)
    elif shape == "array":
        text = "[" + text + "]"
    coding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-8-sig", "utf-16", "utf-32"]))
    return text.encode(coding, "surrogatepass")


def _outcome(parse, body: bytes, chat: bool):
    try:
        return parse(body, chat)
    except ForwardedRequestError as exc:
        return ("refused", str(exc))


def _stdlib_forwarded(body: bytes, chat: bool) -> bytes | None:
    """:func:`forwarded_json_body` as it was: the stdlib's parser with its hooks throughout."""
    from broker.wire.forwarded_request import _parse_int, _reject_constant

    try:
        data = json.loads(body, parse_constant=_reject_constant, parse_int=_parse_int)
    except ForwardedRequestError:
        raise
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    if chat:
        check_chat_stream_flag(data)
        apply_chat_stream_rewrite(data)
    return canonical_json(data)


def _forwarded(body: bytes, chat: bool) -> bytes | None:
    return forwarded_json_body(body, chat_stream_rewrite=chat)


@settings(max_examples=200, deadline=None)
@given(_json_texts(), st.booleans())
def test_the_orjson_parse_forwards_what_the_stdlib_parse_forwarded(body, chat):
    """orjson parses where its value is the stdlib's; big integers (exact, or refused when a
    float64 cannot hold them), ``-0`` (a negative zero), ``NaN``/``Infinity`` (refused),
    duplicate keys (the last wins), lone surrogates (U+FFFD), other encodings and deep texts give
    the same bytes or the same refusal as before."""
    assert _outcome(_forwarded, body, chat) == _outcome(_stdlib_forwarded, body, chat)


@pytest.mark.parametrize(
    "body",
    [
        b'{"a": -0}',
        b'{"a": [-0, -0.0, 0, "x-0"], "d": "2024-05-01"}',
        b'{"a": 0, "b": "x-0"}',
        b'{"a": [0, -0], "b": -0.5}',
        b'{"a": -9223372036854775808, "b": 18446744073709551615, "c": 9223372036854775808}',
        b'{"a": 1e19, "b": -1e300, "c": 9.3e18}',
        b'{"a": 9007199254740993}',
        b'{"a": 18446744073709551616}',
        b'{"a": 123456789012345678901234567890}',
        b'{"a": NaN}',
        b'{"a": -Infinity}',
        b'{"a": 1e400}',
        b'{"n": 1, "n": 16}',
        b'{"a": "\\ud800", "\\udc00": 1}',
        b'\xef\xbb\xbf{"a": 1}',
        '{"a": "é<>&\u2028"}'.encode("utf-16"),
        b'{"a": "\xff"}',
        b'{"a": ' + b"[" * 300 + b"]" * 300 + b"}",
        *(b'{"a": ' + b"[" * d + b"0" + b"]" * d + b"}" for d in (254, 255, 256, 257)),
        b'{"a": ' + b"[" * 2000 + b"]" * 2000 + b"}",
        b'{"a": 1} x',
        b"",
        b"[1]",
    ],
)
def test_the_orjson_parse_edge_cases(body):
    for chat in (False, True):
        assert _outcome(_forwarded, body, chat) == _outcome(_stdlib_forwarded, body, chat)
