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


_HEX64 = r"^[0-9a-fA-F]{64}$"


class VerifyRequest(BaseModel):
    """``POST /v1/verify`` body: the chat ID (``ZG-Res-Key`` or completion ``id``) and, optionally,
    what binds the signature to one exchange.

    Attributes:
        id: the chat ID.
        response: the response body exactly as received (UTF-8 text), or ``response_b64`` (base64
            of the bytes), or ``response_sha256`` (hex SHA-256 of them); at most one.
        request: the request body as the gateway forwarded it (text), or ``request_b64`` or
            ``request_sha256``; at most one. Needs a response too.

    Without a response the check is the SDK's (the text is signed by the TEE signer, nothing ties
    it to a response) and the answer says ``binding: "signature_only"``.
    """

    id: str = Field(min_length=1, max_length=512)
    response: str | None = Field(None, max_length=32 << 20)
    response_b64: str | None = Field(None, max_length=48 << 20)
    response_sha256: str | None = Field(None, pattern=_HEX64)
    request: str | None = Field(None, max_length=32 << 20)
    request_b64: str | None = Field(None, max_length=48 << 20)
    request_sha256: str | None = Field(None, pattern=_HEX64)


class VerifyResponse(BaseModel):
    """``POST /v1/verify`` answer; ``isValid`` is the SDK's ``processResponse`` value, ``binding``
    what it covers (``full``, ``response_only``, ``signature_only``; ``null`` when the signature
    was not reached)."""

    isValid: bool | None
    reason: str
    chat_id: str | None = None
    signer: str | None = None
    detail: str = ""
    binding: str | None = None


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
    #: fees the provider billed for responses refused by ``--verify enforce`` (neuron)
    disputed_fee: str = "0"


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
