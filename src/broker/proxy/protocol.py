"""HTTP protocol models of the local proxy (pydantic): the OpenAI error shape, ``/v1/verify``,
``/v1/account`` and ``/health``. No logic here."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

__all__ = [
    "AccountResponse",
    "ChainInfo",
    "ErrorBody",
    "ErrorResponse",
    "FeeInfo",
    "FundingInfo",
    "HealthResponse",
    "LedgerInfo",
    "SubAccountInfo",
    "VerificationInfo",
    "VerifyRequest",
    "VerifyResponse",
]


class ErrorBody(BaseModel):
    """OpenAI's error object."""

    message: str
    type: str
    code: str | None = None
    param: str | None = None


class ErrorResponse(BaseModel):
    """``{"error": {"message", "type", "code", "param"}}``."""

    error: ErrorBody


class VerifyRequest(BaseModel):
    """``POST /v1/verify`` body: the chat ID (``ZG-Res-Key`` or completion ``id``)."""

    id: str = Field(min_length=1, max_length=512)


class VerifyResponse(BaseModel):
    """``POST /v1/verify`` answer; ``isValid`` is the SDK's ``processResponse`` value."""

    isValid: bool | None
    reason: str
    chat_id: str | None = None
    signer: str | None = None
    detail: str = ""


class HealthResponse(BaseModel):
    """``GET /health``."""

    status: str = "ok"
    provider: str
    service_url: str
    model: str
    service_type: str
    verify: str


class LedgerInfo(BaseModel):
    """The user's ledger, neuron as decimal strings."""

    total_balance: str
    available_balance: str
    locked_balance: str


class SubAccountInfo(BaseModel):
    """The sub-account with the provider, neuron as decimal strings."""

    balance: str
    pending_refund: str
    locked_balance: str
    acknowledged: bool
    generation: int


class FeeInfo(BaseModel):
    """Fees accounted locally (neuron, decimal strings)."""

    unsettled_fee: str
    total_fee: str
    request_count: int


class FundingInfo(BaseModel):
    """Auto-funding state (``InferenceBroker.auto_funding_status``), or ``enabled=False``."""

    enabled: bool
    status: dict[str, Any] | None = None


class VerificationInfo(BaseModel):
    """One recent verification result."""

    chat_id: str | None
    verified: bool | None
    reason: str
    signer: str | None
    detail: str
    at: float


class ChainInfo(BaseModel):
    """Whether the chain reads of ``/v1/account`` answered in time (``chain_timeout``).

    ``ok`` is ``False`` when a part could not be read; ``unavailable`` names those parts
    (``ledger``, ``sub_account``; they are ``null`` in the answer) and ``error`` says why (e.g.
    ``chain node did not answer within 3 s``)."""

    ok: bool = True
    error: str | None = None
    unavailable: list[str] = []


class AccountResponse(BaseModel):
    """``GET /v1/account``: everything a dashboard needs, as JSON."""

    user: str
    provider: str
    ledger: LedgerInfo | None
    sub_account: SubAccountInfo | None
    fees: FeeInfo
    auto_funding: FundingInfo
    recent_verifications: list[VerificationInfo]
    chain: ChainInfo = ChainInfo()
