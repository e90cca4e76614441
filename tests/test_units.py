"""broker.units: exact 0G <-> neuron conversions."""

from decimal import Decimal

import pytest

from broker._exceptions import InvalidAmountError
from broker.units import Neuron, format_0g, parse_0g, to_neuron


@pytest.mark.parametrize(
    ("text", "neuron"),
    [
        ("0.1", 10**17),  # the SDK's float path gives 100000000000000006
        ("0.3", 3 * 10**17),
        ("123.456", 123456 * 10**15),
        ("1.5", 15 * 10**17),
        ("1e-18", 1),
        ("0.000000000000000001", 1),
        (" 3 ", 3 * 10**18),
        ("1_000", 1000 * 10**18),
        (3, 3 * 10**18),
        (Decimal("2.25"), 225 * 10**16),
        ("1000000000000000000000", 10**39),  # >= 1e21 works (the SDK throws)
    ],
)
def test_parse_exact(text, neuron):
    assert parse_0g(text) == neuron


@pytest.mark.parametrize(
    "bad",
    [
        0.1,
        1.0,
        True,
        "nan",
        "NaN",
        "inf",
        "-1",
        "-0.5",
        "0.0000000000000000001",
        "1.0000000000000000001",
        "abc",
        "",
        None,
    ],
)
def test_parse_refuses(bad):
    with pytest.raises(InvalidAmountError):
        parse_0g(bad)


def test_zero_only_when_allowed():
    with pytest.raises(InvalidAmountError):
        parse_0g("0")
    assert parse_0g("0", allow_zero=True) == 0


def test_neuron_passthrough_and_negative():
    assert to_neuron(Neuron(5)) == 5
    assert to_neuron("5") == 5 * 10**18
    with pytest.raises(InvalidAmountError):
        to_neuron(Neuron(-1))
    with pytest.raises(InvalidAmountError):
        to_neuron(Neuron(0))


def test_error_is_value_error_and_broker_error():
    from broker import BrokerError

    with pytest.raises(ValueError):
        parse_0g("x")
    with pytest.raises(BrokerError):
        parse_0g("x")


@pytest.mark.parametrize(
    ("neuron", "places", "text"),
    [
        (15 * 10**17, None, "1.5"),
        (3 * 10**18, None, "3"),
        (1, None, "0.000000000000000001"),
        (-5 * 10**17, None, "-0.5"),
        (10**18, 18, "1.000000000000000000"),
        (12345 * 10**14, 2, "1.23"),
    ],
)
def test_format(neuron, places, text):
    assert format_0g(neuron, places=places) == text


def test_round_trip():
    for value in ("0.1", "7.000000000000000001", "42"):
        assert format_0g(parse_0g(value)) == value
