"""broker.ledger: the ledger broker (main account and provider sub-accounts)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from broker._lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover - names for type checkers; loaded on first use
    from broker.ledger.broker import (
        MAX_PROVIDERS_PER_BATCH,
        MIN_LEDGER_BALANCE,
        MIN_TRANSFER_AMOUNT,
        LedgerBroker,
    )
    from broker.ledger.models import (
        LedgerDetail,
        LedgerOverview,
        RefundDetail,
        SubAccountBalance,
        SubAccountDetail,
        TxResult,
    )

__all__ = [
    "MAX_PROVIDERS_PER_BATCH",
    "MIN_LEDGER_BALANCE",
    "MIN_TRANSFER_AMOUNT",
    "LedgerBroker",
    "LedgerDetail",
    "LedgerOverview",
    "RefundDetail",
    "SubAccountBalance",
    "SubAccountDetail",
    "TxResult",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "MAX_PROVIDERS_PER_BATCH": "broker",
        "MIN_LEDGER_BALANCE": "broker",
        "MIN_TRANSFER_AMOUNT": "broker",
        "LedgerBroker": "broker",
        "LedgerDetail": "models",
        "LedgerOverview": "models",
        "RefundDetail": "models",
        "SubAccountBalance": "models",
        "SubAccountDetail": "models",
        "TxResult": "models",
    },
)
