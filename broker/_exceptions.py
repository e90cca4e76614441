"""The exception tree of 0g-broker.

Every error the library raises derives from :class:`BrokerError`. The classes here are the
cross-cutting categories; each area (``broker.chain``, ``broker.ledger``, ``broker.inference``, ...)
defines its specific subclasses in its own ``errors`` module, and :mod:`broker.errors` re-exports
them all, so ``from broker.errors import X`` always works.

Layout (modelled on ``httpx._exceptions``)::

    BrokerError
    ├── ConfigError                 bad or missing configuration, unknown network preset
    ├── InputError (ValueError)     bad caller input; nothing was sent
    │   ├── InvalidAddressError
    │   └── InvalidAmountError
    ├── KeyStoreError               no key configured, wrong password, unreadable keystore
    ├── ChainError                  anything that involves the chain
    │   ├── RPCError                transport-level failure talking to the node
    │   └── TransactionError        a transaction could not be landed
    ├── LedgerError                 ledger broker (client-side checks)
    ├── InferenceError              inference broker
    ├── AttestationError            TEE quote verification
    ├── ProviderError               provider gateway / worker
    └── DevnetError                 the embedded devnet (anvil)
"""

from __future__ import annotations

__all__ = [
    "AttestationError",
    "BrokerError",
    "ChainError",
    "ConfigError",
    "DevnetError",
    "InferenceError",
    "InputError",
    "InvalidAddressError",
    "InvalidAmountError",
    "KeyStoreError",
    "LedgerError",
    "ProviderError",
    "RPCError",
    "TransactionError",
]


class BrokerError(Exception):
    """Root of every error raised by 0g-broker.

    ``str(err)`` is a one-line, human-readable message that never contains a secret (private key,
    API key, keystore password).

    Attributes:
        hint: an optional next step phrased for the command line (e.g. ``"0g-broker add-account
            --amount 3"``), shown by the CLI after the message; ``None`` when there is none. The
            message itself stays library-neutral.
    """

    hint: str | None = None

    def __init__(self, *args: object, hint: str | None = None) -> None:
        super().__init__(*args)
        if hint is not None:
            self.hint = hint


class ConfigError(BrokerError):
    """Configuration is missing, malformed or names an unknown network preset."""


class InputError(BrokerError, ValueError):
    """The caller passed a bad argument. Raised before anything is sent (no funds moved)."""


class InvalidAddressError(InputError):
    """A string is not a 20-byte hex Ethereum address (``0x`` + 40 hex digits)."""


class InvalidAmountError(InputError):
    """An amount is negative, zero where that is not allowed, NaN/infinite, a float, or has more
    than 18 decimals (finer than one neuron)."""


class KeyStoreError(BrokerError):
    """No private key is configured, the keystore cannot be read, or its password is wrong."""


class ChainError(BrokerError):
    """A failure that involves the chain (RPC or transaction)."""


class RPCError(ChainError):
    """The JSON-RPC node could not be reached or answered with a transport-level error."""


class TransactionError(ChainError):
    """A transaction could not be landed (reverted, timed out, priced out)."""


class LedgerError(BrokerError):
    """A ledger operation was refused by a client-side check (minimums, balances, missing
    ledger)."""


class InferenceError(BrokerError):
    """An inference-broker operation failed (service lookup, token, response verification...)."""


class AttestationError(BrokerError):
    """A TEE attestation report or quote could not be fetched or parsed."""


class ProviderError(BrokerError):
    """A provider-side (gateway or worker) operation failed."""


class DevnetError(BrokerError):
    """The embedded devnet could not be started, reached or stopped."""
