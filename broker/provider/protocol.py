"""HTTP models of the gateway (``provider-gateway.md`` B2, B7, B8, D13). No logic here."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ErrorBody",
    "HealthResponse",
    "ModelCard",
    "ModelList",
    "NoTeeReport",
    "SignatureResponse",
    "UnsettledFeeResponse",
]


class ErrorBody(BaseModel):
    """Every refusal: ``{"error": "<context>: <message>"}`` (B2)."""

    error: str


class HealthResponse(BaseModel):
    """``GET /health``: liveness and the provider address (no auth, no limits)."""

    status: str = "ok"
    provider: str


class UnsettledFeeResponse(BaseModel):
    """``GET /v1/user/{address}/unsettledfee``: the fee in neuron as a decimal string."""

    userAddress: str
    unsettledFee: str


class SignatureResponse(BaseModel):
    """``GET /v1/proxy/signature/{chatID}`` (B7)."""

    text: str
    signature: str
    signing_address: str
    signing_algo: str = "ecdsa"


class ModelCard(BaseModel):
    """One entry of ``/v1/models`` (OpenAI model card plus 0G service fields)."""

    model_config = ConfigDict(extra="allow")

    id: str
    object: str = "model"
    owned_by: str
    service_type: str
    input_price: str
    output_price: str


class ModelList(BaseModel):
    """``GET /v1/models``: exactly ``{"object": "list", "data": [...]}`` (D13)."""

    object: str = "list"
    data: list[ModelCard] = Field(default_factory=list)


class NoTeeReport(BaseModel):
    """``GET /v1/quote`` on a machine without a TEE: says so plainly, carries no quote."""

    tee: str = "none"
    attested: bool = False
    message: str
    signing_address: str
    report_data: str

    def body(self) -> dict[str, Any]:
        """The JSON body."""
        return self.model_dump()
