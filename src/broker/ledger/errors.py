"""Client-side ledger errors (raised before any transaction is sent).

Texts follow the SDK's where ``user-broker.md`` §4 gives one. Contract reverts are separate: they are
the generated :mod:`broker.chain.errors` classes (``LedgerExistsError``, ...).
"""

from __future__ import annotations

from broker._exceptions import ConfigError, LedgerError

__all__ = [
    "InsufficientLedgerBalanceError",
    "LedgerAlreadyExistsError",
    "LedgerNotEmptyError",
    "MinimumBalanceError",
    "NoLedgerError",
    "UnknownServiceError",
    "UnregisteredServiceError",
]


class MinimumBalanceError(LedgerError):
    """An amount is below a contract minimum: 3 0G to create a ledger, 1 0G for a new provider
    sub-account, or a refund would leave between 0 and 3 0G in the ledger."""


class LedgerAlreadyExistsError(LedgerError):
    """``add_ledger`` for an account that already has a ledger."""


class NoLedgerError(LedgerError):
    """The operation needs a ledger and the account has none."""


class InsufficientLedgerBalanceError(LedgerError):
    """The ledger's available balance does not cover the amount."""


class UnknownServiceError(LedgerError):
    """A service type or name that this broker does not know (``inference``, ``inference-v1.0``)."""


class UnregisteredServiceError(ConfigError):
    """The inference contract is not registered in the LedgerManager (``getServiceInfo`` returned
    the zero struct), so its service name cannot be discovered (``user-broker.md`` §1.4)."""


class LedgerNotEmptyError(LedgerError):
    """``delete_ledger`` while the ledger still holds funds (withdraw them with ``refund``)."""
