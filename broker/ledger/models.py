"""Result models of the ledger broker (amounts are ints in neuron; times in Unix seconds)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from broker.chain.contracts import Ledger
from broker.units import format_0g

__all__ = [
    "LedgerDetail",
    "LedgerOverview",
    "RefundDetail",
    "SubAccountBalance",
    "SubAccountDetail",
    "TxResult",
]


@dataclass(frozen=True)
class TxResult:
    """What a write returns (the SDK returns nothing).

    Attributes:
        tx_hash: ``0x`` hash of the mined transaction.
        block_number: block it was mined in.
        gas_used: gas used.
        effective_gas_price: neuron per gas actually paid.
    """

    tx_hash: str
    block_number: int
    gas_used: int
    effective_gas_price: int

    @classmethod
    def from_receipt(cls, receipt: Any) -> TxResult:
        return cls(
            tx_hash="0x" + bytes(receipt["transactionHash"]).hex(),
            block_number=int(receipt["blockNumber"]),
            gas_used=int(receipt["gasUsed"]),
            effective_gas_price=int(receipt.get("effectiveGasPrice") or 0),
        )


@dataclass(frozen=True)
class LedgerDetail(Ledger):
    """The user's ledger (``getLedger``), amounts in neuron.

    Fields ``user``, ``available_balance``, ``total_balance``, ``additional_info`` and
    ``locked_balance`` = total − available (funds transferred to provider sub-accounts), as in
    :class:`broker.chain.contracts.Ledger`.
    """


@dataclass(frozen=True)
class SubAccountBalance:
    """One provider sub-account seen from the ledger: balance and pending refund in neuron."""

    provider: str
    balance: int
    pending_refund: int
    service_type: str = "inference"


@dataclass(frozen=True)
class LedgerOverview:
    """``get_ledger_with_detail``: totals (``ledgerInfo`` of the SDK) plus sub-accounts.

    Attributes:
        ledger: the raw ledger.
        total / locked / available: neuron (total, total − available, available).
        inference: the inference sub-accounts, in ``getLedgerProviders`` order.
    """

    ledger: LedgerDetail
    inference: list[SubAccountBalance] = field(default_factory=list)

    @property
    def total(self) -> int:
        return self.ledger.total_balance

    @property
    def locked(self) -> int:
        return self.ledger.locked_balance

    @property
    def available(self) -> int:
        return self.ledger.available_balance


@dataclass(frozen=True)
class RefundDetail:
    """A pending refund: amount in neuron, created_at Unix s, remaining_lock seconds (≥ 0,
    fixes ``user-broker.md`` §13 item 8)."""

    index: int
    amount: int
    created_at: int
    remaining_lock: int

    @property
    def remaining_lock_text(self) -> str:
        """``<h>h <m>min <s>s`` as the reference CLI prints it."""
        h, rest = divmod(self.remaining_lock, 3600)
        m, s = divmod(rest, 60)
        return f"{h}h {m}min {s}s"


@dataclass(frozen=True)
class SubAccountDetail:
    """A provider sub-account with its pending refunds (``get-sub-account``)."""

    service_type: str
    user: str
    provider: str
    balance: int
    pending_refund: int
    lock_time: int
    refunds: list[RefundDetail]
    acknowledged: bool
    generation: int

    def as_json(self) -> dict[str, Any]:
        """JSON-ready dict: amounts as integer-neuron strings plus ``*_0g`` decimal strings."""
        return {
            "service_type": self.service_type,
            "user": self.user,
            "provider": self.provider,
            "balance": str(self.balance),
            "balance_0g": format_0g(self.balance),
            "pending_refund": str(self.pending_refund),
            "pending_refund_0g": format_0g(self.pending_refund),
            "lock_time": self.lock_time,
            "acknowledged": self.acknowledged,
            "generation": self.generation,
            "refunds": [
                {
                    "index": r.index,
                    "amount": str(r.amount),
                    "amount_0g": format_0g(r.amount),
                    "created_at": r.created_at,
                    "remaining_lock": r.remaining_lock,
                }
                for r in self.refunds
            ],
        }
