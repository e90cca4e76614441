"""The shared ``n`` rule (broker.wire.n): one integer rule for the worker, the gateway and serve."""

from __future__ import annotations

import httpx
import pytest

from broker._exceptions import InputError
from broker.wire.json_body import InvalidJSONBodyError
from broker.wire.n import MAX_N, InvalidNError, parse_n, parse_n_field, request_n

REFUSED_JSON = [
    "4.00",
    "2.0",
    "2",
    2.0,
    4.0,
    True,
    False,
    0,
    -1,
    MAX_N + 1,
    2**70,
    [2],
    {"n": 2},
    "",
    "NaN",
    float("inf"),
]


@pytest.mark.parametrize("value", REFUSED_JSON, ids=repr)
def test_json_n_refused(value) -> None:
    with pytest.raises(InvalidNError) as info:
        parse_n(value)
    assert isinstance(info.value, InputError) and info.value.param == "n"


@pytest.mark.parametrize("value", [None, 1, 2, MAX_N])
def test_json_n_accepted(value) -> None:
    assert parse_n(value) == (value or 1)


@pytest.mark.parametrize("text", ["2.0", "4.00", " 2", "2 ", "+2", "0x2", "0", "17", "", "²"])
def test_form_n_refused(text: str) -> None:
    with pytest.raises(InvalidNError):
        parse_n_field(text)


def test_form_n_accepted_and_bound() -> None:
    assert parse_n_field(None) == 1
    assert parse_n_field("3") == 3
    assert parse_n_field("03") == 3
    with pytest.raises(InvalidNError, match="between 1 and 4"):
        parse_n_field("5", maximum=4)


def _form(fields: dict) -> tuple[bytes, str]:
    request = httpx.Request(
        "POST", "http://x/", data=fields, files={"image": ("n.png", b'\x89PNG name="n"\r\n\r\n9')}
    )
    return request.read(), request.headers["content-type"]


def test_request_n_json_and_forms() -> None:
    assert request_n(b'{"prompt":"x","n":3}', "application/json") == 3
    assert request_n(b'{"prompt":"x"}', "application/json; charset=utf-8") == 1
    assert request_n(*_form({"prompt": "x", "n": "2"})) == 2
    assert request_n(*_form({"prompt": "x"})) == 1
    with pytest.raises(InvalidNError, match="at most once"):
        request_n(*_form({"prompt": "x", "n": ["1", "4"]}))  # serve took the first, worker the last
    with pytest.raises(InvalidNError):
        request_n(*_form({"prompt": "x", "n": "4.00"}))
    with pytest.raises(InvalidNError):
        request_n(b'{"n":"4.00"}', "application/json")
    with pytest.raises(InvalidJSONBodyError):
        request_n(b'{"n":', "application/json")
