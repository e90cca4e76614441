"""Data models of the inference broker: on-chain structs and what the broker returns.

``Account`` and ``Refund`` are the chain layer's structs (:mod:`broker.chain.contracts`),
re-exported.
Sources: ``InferenceServing`` ABI (``Service``, ``Account``, ``Refund``; contracts.md A3.2),
user-broker.md §5.1–5.7. Amounts are ints in neuron; times are Unix seconds unless a name says
``ms``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from pydantic import BaseModel, ConfigDict

from broker.chain import contracts as _chain
from broker.chain.contracts import Account, Refund
from broker.inference.service_info import (
    VERIFIABILITY_KINDS,
    is_multi_model,
    is_verifiable,
    parse_additional_info,
    price_denomination,
    provider_type,
)

__all__ = [
    "VERIFIABILITY_KINDS",
    "Account",
    "AccountDetail",
    "ApiKeyInfo",
    "ProviderModelInfo",
    "ProviderModels",
    "Refund",
    "RefundDetail",
    "Service",
    "ServiceMetadata",
    "SignerStatus",
    "parse_additional_info",
]


class Service(_chain.Service):
    """The on-chain ``Service`` struct (``getService`` / ``getAllServices``; contracts.md A3.2) with
    ``additionalInfo`` helpers. Same fields as :class:`broker.chain.contracts.Service` (prices in
    neuron per token, image or second; ``updated_at`` Unix seconds)."""

    @classmethod
    def from_chain(cls, service: _chain.Service) -> Service:
        """Wrap a :class:`broker.chain.contracts.Service` (as returned by the contract wrapper)."""
        if isinstance(service, cls):
            return service
        return cls(**{f.name: getattr(service, f.name) for f in fields(_chain.Service)})

    @property
    def additional_info_json(self) -> dict[str, Any] | None:
        """``additionalInfo`` parsed as a JSON object, or ``None``."""
        return parse_additional_info(self.additional_info)

    @property
    def is_verifiable(self) -> bool:
        """``verifiability`` is one of ``OpML``, ``TeeML``, ``ZKML`` (§8.2 step 2)."""
        return is_verifiable(self.verifiability)

    @property
    def provider_type(self) -> str:
        """``"centralized"`` or ``"decentralized"`` (see :func:`service_info.provider_type`)."""
        return provider_type(self.additional_info_json)

    @property
    def multi_model(self) -> bool:
        """``additionalInfo.MultiModel is True`` [0.9]."""
        return is_multi_model(self.additional_info_json)

    @property
    def price_denomination(self) -> str | None:
        """``additionalInfo.priceDenomination`` [0.9]."""
        return price_denomination(self.additional_info_json)


@dataclass(frozen=True, slots=True)
class ServiceMetadata:
    """``getServiceMetadata``: the OpenAI base URL (``{url}/v1/proxy``) and the model to request."""

    endpoint: str
    model: str


@dataclass(frozen=True, slots=True)
class RefundDetail:
    """A pending refund: ``amount`` in neuron, ``remain_time`` seconds until it unlocks (≥ 0;
    0 = unlocked, retrievable now — the SDK returns negative values, §13 item 8)."""

    amount: int
    remain_time: int


@dataclass(frozen=True, slots=True)
class AccountDetail:
    """``getAccountWithDetail``: the account and its pending refunds (first
    ``validRefundsLength`` entries with a non-zero amount)."""

    account: Account
    refunds: tuple[RefundDetail, ...]

    @classmethod
    def build(cls, account: Account, lock_time: int, now_s: int) -> AccountDetail:
        """Compute refund details: ``remain_time = max(0, lock_time − (now_s − created_at))``.

        Args:
            account: the account.
            lock_time: the contract's ``lockTime()`` in seconds.
            now_s: current Unix time in seconds.
        """
        refunds = tuple(
            RefundDetail(r.amount, max(0, lock_time - (now_s - r.created_at)))
            for r in account.refunds[: account.valid_refunds_length]
            if r.amount != 0
        )
        return cls(account=account, refunds=refunds)


@dataclass(frozen=True, slots=True)
class SignerStatus:
    """``checkProviderSignerStatus``: whether the owner acknowledged the provider's TEE signer
    (``tee_signer_address`` is ``""`` when none is set). ``sub_account_created``: the call created
    the user's sub-account with 1 0G first (as the SDK does)."""

    is_acknowledged: bool
    tee_signer_address: str
    sub_account_created: bool = False


@dataclass(frozen=True, slots=True)
class ApiKeyInfo:
    """A persistent API key (``get-secret`` / ``createApiKey``).

    ``created_at`` and ``expires_at`` are Unix ms (0 = never). ``raw_token`` (``app-sk-…``) is a
    bearer credential and is hidden from ``repr``.
    """

    token_id: int
    created_at: int
    expires_at: int
    raw_token: str = field(repr=False)


class ProviderModelInfo(BaseModel):
    """One entry of ``GET {url}/v1/models`` ``data`` [0.9] (user-broker.md 5.7). Only ``id`` is
    required; other fields (``pricing``, ``canonical_id``, ``pricing_usd``…) are kept as given."""

    model_config = ConfigDict(extra="allow", frozen=True)

    id: str
    canonical_id: str | None = None
    pricing: dict[str, Any] | None = None
    pricing_usd: dict[str, Any] | None = None


class ProviderModels(BaseModel):
    """``getProviderModels(provider)`` [0.9]: the provider's model catalogue."""

    model_config = ConfigDict(frozen=True)

    provider: str
    url: str
    multi_model: bool
    price_denomination: str | None = None
    default_model: str
    models: list[ProviderModelInfo]
