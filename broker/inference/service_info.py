"""Pure helpers over a service's on-chain fields: ``additionalInfo`` parsing and the flags derived
from it (user-broker.md §5.7, §8.2). No chain access, no heavy imports."""

from __future__ import annotations

import logging
from typing import Any

from broker.wire.json_body import loads_json_or_none

__all__ = [
    "VERIFIABILITY_KINDS",
    "is_multi_model",
    "is_verifiable",
    "parse_additional_info",
    "price_denomination",
    "provider_type",
]

logger = logging.getLogger(__name__)

VERIFIABILITY_KINDS = ("OpML", "TeeML", "ZKML")


def parse_additional_info(text: str) -> dict[str, Any] | None:
    """``Service.additionalInfo`` as a JSON object; ``None`` when empty, invalid or not an
    object."""
    if not text:
        return None
    obj = loads_json_or_none(text)
    return obj if isinstance(obj, dict) else None


def is_verifiable(verifiability: str) -> bool:
    """``verifiability`` is exactly one of ``OpML``, ``TeeML``, ``ZKML`` (§8.2 step 2)."""
    return verifiability in VERIFIABILITY_KINDS


def provider_type(info: dict[str, Any] | None) -> str:
    """``additionalInfo.ProviderType`` [0.8]: ``"centralized"`` or ``"decentralized"`` (default when
    missing; any other value is treated as decentralized, with a warning)."""
    value = (info or {}).get("ProviderType")
    if value is None or value == "decentralized":
        return "decentralized"
    if value == "centralized":
        return "centralized"
    logger.warning("unknown ProviderType %r; treating as decentralized", value)
    return "decentralized"


def is_multi_model(info: dict[str, Any] | None) -> bool:
    """``additionalInfo.MultiModel is True`` [0.9] (SDK ``parseMultiModelInfo``)."""
    return (info or {}).get("MultiModel") is True


def price_denomination(info: dict[str, Any] | None) -> str | None:
    """``additionalInfo.priceDenomination`` (``"USD"`` / ``"NATIVE"``) when present [0.9]."""
    value = (info or {}).get("priceDenomination")
    return value if isinstance(value, str) else None
