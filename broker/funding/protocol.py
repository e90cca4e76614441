"""Wire model of the provider's ``GET /v1/user/{address}/unsettledfee`` (provider-gateway.md B2).

Response: ``{"userAddress": "<addr>", "unsettledFee": "<neuron decimal string>"}``; like the SDK, a
missing ``unsettledFee`` counts as 0 (user-broker.md §7.3 step 2).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["UnsettledFeeResponse"]


class UnsettledFeeResponse(BaseModel):
    """The ``/unsettledfee`` body. ``unsettled_fee`` is neuron (int), parsed from a decimal string
    (a JSON integer is accepted too); negative or fractional values are refused."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    user_address: str | None = Field(default=None, alias="userAddress")
    unsettled_fee: int = Field(default=0, alias="unsettledFee")

    @field_validator("unsettled_fee", mode="before")
    @classmethod
    def _parse_fee(cls, value: object) -> int:
        if value is None:
            return 0
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise ValueError("unsettledFee must be a decimal string")  # noqa: TRY004 (pydantic)
        text = str(value).strip()
        if not text.isdigit():
            raise ValueError("unsettledFee must be a non-negative integer in neuron")
        return int(text)
