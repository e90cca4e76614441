"""Exact conversions between 0G and neuron (1 0G = 10**18 neuron).

The reference SDK parses 0G amounts through binary floats (``user-broker.md`` §2.1, §13 item 5);
we parse them exactly with :class:`decimal.Decimal` and refuse floats outright.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from broker._exceptions import InvalidAmountError

__all__ = ["NEURON_PER_0G", "Amount", "Neuron", "format_0g", "parse_0g", "to_neuron"]

NEURON_PER_0G = 10**18


class Neuron(int):
    """An explicit amount in neuron. Wrap an int in ``Neuron(...)`` to pass neuron where an API
    otherwise reads 0G: ``deposit_fund(Neuron(10**17))`` deposits 0.1 0G."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Neuron({int(self)})"


Amount = str | int | Decimal | Neuron


def parse_0g(amount: str | int | Decimal, *, allow_zero: bool = False) -> int:
    """Parse an amount in 0G into an integer number of neuron, exactly.

    Args:
        amount: a decimal string (``"1.5"``, ``"3"``, ``"1e-3"``), an int (whole 0G) or a
            :class:`~decimal.Decimal`. Floats are refused: they cannot represent most decimals.
        allow_zero: accept 0 (otherwise the amount must be strictly positive).

    Returns:
        The amount in neuron (int).

    Raises:
        InvalidAmountError: float or bool input, unparsable text, NaN or infinity, a negative value,
            zero (unless ``allow_zero``), or more than 18 decimals.
    """
    if isinstance(amount, Neuron):
        return to_neuron(amount, allow_zero=allow_zero)
    if isinstance(amount, (bool, float)):
        raise InvalidAmountError(
            f"amount {amount!r} is a {type(amount).__name__}; pass 0G as a decimal string, "
            "an int or a Decimal"
        )
    if isinstance(amount, int):
        dec = Decimal(amount)
    elif isinstance(amount, Decimal):
        dec = amount
    elif isinstance(amount, str):
        text = amount.strip().replace("_", "")
        try:
            dec = Decimal(text)
        except InvalidOperation:
            raise InvalidAmountError(f"amount {amount!r} is not a number") from None
    else:
        raise InvalidAmountError(f"amount of type {type(amount).__name__} is not supported")
    if not dec.is_finite():
        raise InvalidAmountError(f"amount {amount!r} is not a finite number")
    if dec < 0:
        raise InvalidAmountError(f"amount {amount!r} is negative")
    if dec == 0 and not allow_zero:
        raise InvalidAmountError("amount must be greater than 0")
    neuron = dec * NEURON_PER_0G
    if neuron != neuron.to_integral_value():
        raise InvalidAmountError(
            f"amount {amount!r} has more than 18 decimals (finer than 1 neuron)"
        )
    return int(neuron)


def to_neuron(amount: Amount, *, allow_zero: bool = False) -> int:
    """Normalise an amount to neuron: :class:`Neuron` values pass through, anything else is 0G
    parsed by :func:`parse_0g`.

    Raises:
        InvalidAmountError: as :func:`parse_0g`, or a negative :class:`Neuron`.
    """
    if isinstance(amount, Neuron):
        value = int(amount)
        if value < 0:
            raise InvalidAmountError(f"amount {value} neuron is negative")
        if value == 0 and not allow_zero:
            raise InvalidAmountError("amount must be greater than 0")
        return value
    return parse_0g(amount, allow_zero=allow_zero)


def format_0g(neuron: int, *, places: int | None = None) -> str:
    """Format an integer amount of neuron as a 0G decimal string, exactly.

    Args:
        neuron: amount in neuron (may be negative).
        places: fixed number of decimals (``18`` gives the CLI's full precision); ``None`` strips
            trailing zeros (``"1.5"``, ``"3"``).

    Returns:
        The decimal string, never in exponent notation.
    """
    sign = "-" if neuron < 0 else ""
    whole, frac = divmod(abs(int(neuron)), NEURON_PER_0G)
    frac_text = f"{frac:018d}"
    if places is None:
        frac_text = frac_text.rstrip("0")
    else:
        frac_text = frac_text[:places] if places < 18 else frac_text + "0" * (places - 18)
    return f"{sign}{whole}.{frac_text}" if frac_text else f"{sign}{whole}"
