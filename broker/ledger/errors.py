"""Client-side ledger errors (raised before any transaction is sent).

Texts follow the SDK's where ``user-broker.md`` §4 gives one. Contract reverts are separate: they
are the generated :mod:`broker.chain.errors` classes (``LedgerExistsError``, ...).
"""

from __future__ import annotations

from broker._exceptions import ConfigError, InputError, LedgerError

__all__ = [
    "InsufficientLedgerBalanceError",
    "InsufficientWalletBalanceError",
    "LedgerAlreadyExistsError",
    "LedgerNotEmptyError",
    "MinimumBalanceError",
    "NoLedgerError",
    "ProviderNotRegisteredError",
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


class ProviderNotRegisteredError(LedgerError, InputError):
    """No inference service is registered at the provider address (``serviceExists(provider)`` is
    false), so a transfer or an acknowledgement would lock funds where nobody can serve them;
    usually a mistyped address. ``address`` is the checksummed address. Refused before anything is
    sent; ``allow_unregistered=True`` (CLI ``--force``) overrides it for a transfer."""

    def __init__(self, address: str, *, hint: str | None = None) -> None:
        super().__init__(
            f"no service is registered at {address}: check the provider address (a transfer there "
            "would lock funds that no provider can serve)",
            hint=hint,
        )
        self.address = address


class InsufficientWalletBalanceError(LedgerError):
    """The wallet's own balance (native 0G, not the ledger) does not cover an amount to deposit
    plus gas. ``balance`` and ``amount`` are in neuron. Refused before anything is sent."""

    def __init__(self, message: str, *, balance: int, amount: int, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.balance = balance
        self.amount = amount
