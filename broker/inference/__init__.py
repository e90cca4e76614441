"""broker.inference — the user-side inference broker (user-broker.md §5–§8).

Modules: ``token`` (``app-sk-`` session tokens and the provider-side check), ``chat_id``,
``response_signature``, ``fees``, ``fee_store``, ``models``, ``errors``, ``broker``
(``InferenceBroker``, the facade over ``state``, ``services``, ``accounts``, ``sessions`` and
``responses``). Names below are loaded lazily so ``import broker.inference`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "Account",
    "AccountDetail",
    "ApiKeyInfo",
    "FeeStore",
    "FundingStrategy",
    "InferenceBroker",
    "NoFunding",
    "ParsedAuthorization",
    "ProviderModels",
    "SSEChatIdExtractor",
    "Service",
    "ServiceMetadata",
    "SessionToken",
    "UsageCounts",
    "UsageStreamCollector",
    "VerificationReason",
    "VerificationResult",
    "authorization_header",
    "averify_response_signature",
    "calculate_fee",
    "extract_chat_id",
    "fee_for_content",
    "is_session_rejection",
    "new_session_token",
    "parse_authorization",
    "sign_session_token",
    "verify_response_signature",
    "verify_session_token",
]

_LOCATIONS = {
    "InferenceBroker": "broker",
    "FundingStrategy": "broker",
    "NoFunding": "broker",
    "is_session_rejection": "broker",
    "SessionToken": "token",
    "ParsedAuthorization": "token",
    "new_session_token": "token",
    "sign_session_token": "token",
    "authorization_header": "token",
    "parse_authorization": "token",
    "verify_session_token": "token",
    "extract_chat_id": "chat_id",
    "SSEChatIdExtractor": "chat_id",
    "VerificationReason": "response_signature",
    "VerificationResult": "response_signature",
    "verify_response_signature": "response_signature",
    "averify_response_signature": "response_signature",
    "UsageCounts": "fees",
    "UsageStreamCollector": "fees",
    "calculate_fee": "fees",
    "fee_for_content": "fees",
    "FeeStore": "fee_store",
    "Service": "models",
    "ServiceMetadata": "models",
    "Account": "models",
    "AccountDetail": "models",
    "ApiKeyInfo": "models",
    "ProviderModels": "models",
}


def __getattr__(name: str) -> Any:
    module = _LOCATIONS.get(name)
    if module is None:
        raise AttributeError(f"module 'broker.inference' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"broker.inference.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
