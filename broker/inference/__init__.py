"""broker.inference — the user-side inference broker (user-broker.md §5–§8).

Modules: ``token_issuing`` (new ``app-sk-`` session tokens), ``chat_id``,
``response_signature``, ``fee_store``, ``models``, ``errors``, ``broker`` (``InferenceBroker``, the
facade over ``state``, ``services``, ``accounts``, ``sessions`` and ``responses``). The rules the
gateway shares (token format and checks, fees, SSE and chat ids) live in :mod:`broker.wire`; the
names below re-export them for callers of the user side. Names are loaded lazily so
``import broker.inference`` stays cheap.
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
    "SessionToken": "broker.wire.session_token",
    "ParsedAuthorization": "broker.wire.session_token",
    "new_session_token": "token_issuing",
    "sign_session_token": "broker.wire.session_token",
    "authorization_header": "broker.wire.session_token",
    "parse_authorization": "broker.wire.session_token",
    "verify_session_token": "broker.wire.session_token",
    "extract_chat_id": "chat_id",
    "SSEChatIdExtractor": "broker.wire.sse",
    "VerificationReason": "response_signature",
    "VerificationResult": "response_signature",
    "verify_response_signature": "response_signature",
    "averify_response_signature": "response_signature",
    "UsageCounts": "broker.wire.fees",
    "UsageStreamCollector": "broker.wire.sse",
    "calculate_fee": "broker.wire.fees",
    "fee_for_content": "broker.wire.fees",
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
    path = module if module.startswith("broker.") else f"broker.inference.{module}"
    value = getattr(importlib.import_module(path), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
