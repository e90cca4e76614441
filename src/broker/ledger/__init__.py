"""broker.ledger: the ledger broker (main account and provider sub-accounts)."""

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
