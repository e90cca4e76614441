"""The servers' one JSON body parse (broker.wire.json_body): deep nesting, lone surrogates and bad
UTF-8 are refused with a typed error, without recursion."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker._exceptions import InputError
from broker.wire.json_body import (
    MAX_JSON_DEPTH,
    InvalidJSONBodyError,
    json_depth,
    loads_json_or_none,
    loads_request_json,
)


def nested(depth: int, open_: str = "[", close: str = "]") -> bytes:
    return ('{"prompt":"x","extra":' + open_ * depth + close * depth + "}").encode()


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH, 1025, 100_000])
def test_deep_arrays_refused(depth: int) -> None:
    with pytest.raises(InvalidJSONBodyError) as info:
        loads_request_json(nested(depth))
    assert info.value.code == "json_too_deep" and isinstance(info.value, InputError)


def test_deep_objects_refused() -> None:
    body = b'{"a":' * 50_000 + b"1" + b"}" * 50_000
    with pytest.raises(InvalidJSONBodyError, match="deeper than"):
        loads_request_json(body)


def test_depth_at_the_limit_accepted() -> None:
    value = loads_request_json(nested(MAX_JSON_DEPTH - 1))
    assert json_depth(value) == MAX_JSON_DEPTH
    assert json.dumps(value)  # downstream recursive code copes with what is accepted


@pytest.mark.parametrize(
    "body",
    [
        rb'{"prompt":"\ud800"}',
        rb'{"prompt":"\udc00"}',
        rb'{"prompt":"\ud800\u0041"}',
        b'{"prompt":"\xed\xa0\x80"}',
    ],
)
def test_lone_surrogates_refused(body: bytes) -> None:
    with pytest.raises(InvalidJSONBodyError):
        loads_request_json(body)


@pytest.mark.parametrize(
    "body", [b"\xff\xfe{}", b'{"a":NaN}', b'{"a":Infinity}', b"", b"{", b'{"a":1e999}']
)
def test_invalid_bodies_refused(body: bytes) -> None:
    with pytest.raises(InvalidJSONBodyError) as info:
        loads_request_json(body)
    assert info.value.code == "invalid_json"


def test_valid_bodies_parsed_like_json() -> None:
    body = '{"prompt":"\\ud83d\\ude00 ok","n":2,"a":[1,2.5,null,true],"s":"é"}'
    assert loads_request_json(body.encode()) == json.loads(body)
    assert loads_request_json(body) == json.loads(body)


def test_json_depth_iterative() -> None:
    assert json_depth(1) == 0 and json_depth([]) == 1 and json_depth({"a": [{}]}) == 3
    deep: list = []
    for _ in range(10_000):
        deep = [deep]
    assert json_depth(deep, limit=10) == 11


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"jobId": "j1"}', {"jobId": "j1"}),
        (b"null", None),
        (b"not json", None),
        (b"\xff\xfe{", None),
        (b"[" * 100_000 + b"]" * 100_000, None),  # deeper than the recursion limit
        (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, None),
        # deeper than the stdlib parses under the recursion limit, within orjson's 1024: still
        # "not JSON", as the stdlib says (a deep value must not reach recursive code downstream)
        (b"[" * 1020 + b"]" * 1020, None),
        ("[" * 1020 + "]" * 1020, None),
        ("[1, 12345678901234567890123]", [1, 12345678901234567890123]),  # big ints exact
    ],
)
def test_loads_json_or_none_never_raises(raw, expected):
    assert loads_json_or_none(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        b"[18446744073709551616, -9223372036854775809, 123456789012345678901234567890]",
        b'{"usage": {"prompt_tokens": 100000000000000000000000}}',
        '{"\u00e9\u4e2d": "\u00e9", "usage": {"total_tokens": 1180591620717411303424}}',
        '{"a": "\ud83d\ude00", "n": [1180591620717411303424]}',
        b'{"n": 1180591620717411303424' + b" " * 300 + b"}",
        b"[1.7976931348623157e309, NaN, -Infinity]",
        b'"\\ud800"',
        '{"a": 1}'.encode("utf-16"),
        b'{"a": 1, "a": 2}',
    ],
)
def test_loads_json_or_none_is_the_stdlib_value(raw):
    """The fast path (orjson) never changes a value: the attack is a usage count beyond 64 bits,
    which orjson alone would round to a float (a different fee than the gateway's Go rule)."""
    got = loads_json_or_none(raw)
    want = json.loads(raw)
    assert repr(got) == repr(want)


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(_json_values, st.booleans())
def test_loads_json_or_none_matches_the_stdlib(value, as_text):
    text = json.dumps(value, ensure_ascii=False)
    raw = text if as_text else text.encode("utf-8", "surrogatepass")
    try:
        want = json.loads(raw)
    except ValueError:
        assert loads_json_or_none(raw) is None
        return
    assert repr(loads_json_or_none(raw)) == repr(want)


def test_parsers_of_other_parties_bodies_survive_deep_nesting():
    """The attack: a provider (or a relay in front of it) answers with 100 000 nested arrays. Each
    parser of another party's body gives "not JSON" instead of raising RecursionError (a 500)."""
    from broker.inference.service_info import parse_additional_info
    from broker.provider.billed import job_id_of
    from broker.provider.runtime import json_or_none
    from broker.wire.session_token import MalformedTokenError, parse_authorization

    deep = b"[" * 100_000 + b"]" * 100_000
    assert parse_additional_info(deep.decode()) is None
    assert job_id_of(deep) is None
    assert json_or_none(deep, None) is None
    import base64

    token = base64.b64encode(deep + b"|0x" + b"00" * 65).decode()
    with pytest.raises(MalformedTokenError):
        parse_authorization("Bearer app-sk-" + token)
