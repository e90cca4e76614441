"""Address validation: ``0x`` + 40 hex digits, returned checksummed."""

from __future__ import annotations

import re

from eth_utils import to_checksum_address

from broker._exceptions import InvalidAddressError

__all__ = ["ZERO_ADDRESS", "checksum_address"]

ZERO_ADDRESS = "0x0000000000000000000000000000000000000000"

_ADDRESS_RE = re.compile(r"^0[xX][0-9a-fA-F]{40}$")


def checksum_address(value: object, *, field: str = "address") -> str:
    """Validate an Ethereum address and return it in EIP-55 checksum form.

    Mixed-case input is accepted whatever its checksum (the SDK and CLI accept any case).

    Args:
        value: the address text (``0x`` + 40 hex digits).
        field: what the address is, for the error message (``"provider"``, ``"recipient"``).

    Returns:
        The checksummed address (str).

    Raises:
        InvalidAddressError: ``value`` is not a string of that shape.
    """
    if not isinstance(value, str) or not _ADDRESS_RE.match(value.strip()):
        shown = value if isinstance(value, str) and len(value) <= 80 else type(value).__name__
        raise InvalidAddressError(
            f"invalid {field} {shown!r}: expected 0x followed by 40 hex digits"
        )
    return to_checksum_address(value.strip().lower())
