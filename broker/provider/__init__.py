"""The provider gateway (settlement agent): ``0g-broker provider serve`` / ``register``.

Modules: ``settings`` (pydantic-settings, ``ZG_PROVIDER_*``), ``protocol`` (HTTP models), ``tee``
(TEE signer and ``/v1/quote``), ``auth`` (B3/B4), ``accounts`` (chain cache), ``limits`` (B6),
``signing`` (B7), ``db`` + ``billing`` (B9), ``settlement`` (B10), ``forward`` (B5), ``app``
(FastAPI app), ``router`` (routes), ``dependencies`` (the checks routes depend on), ``billed`` (one
billed request: admit, forward, finish, release), ``hot_route`` (the billed ``POST`` routes as
pure ASGI, the same checks without FastAPI's routing), ``runtime`` (per-app state), ``register``
(B11), ``serve`` (assembly), ``errors``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from broker._lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover - names for type checkers; loaded on first use
    from broker.provider.errors import (
        BodyTooLargeError,
        ForbiddenError,
        GatewayHTTPError,
        OverloadedError,
        ProviderConfigError,
        RateLimitedError,
        RequestValidationError,
        SessionValidationError,
        SettlementError,
        SignatureNotFoundError,
        UnsupportedEndpointError,
    )
    from broker.provider.settings import ProviderSettings

__all__ = [
    "BodyTooLargeError",
    "ForbiddenError",
    "GatewayHTTPError",
    "OverloadedError",
    "ProviderConfigError",
    "ProviderSettings",
    "RateLimitedError",
    "RequestValidationError",
    "SessionValidationError",
    "SettlementError",
    "SignatureNotFoundError",
    "UnsupportedEndpointError",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "BodyTooLargeError": "errors",
        "ForbiddenError": "errors",
        "GatewayHTTPError": "errors",
        "OverloadedError": "errors",
        "ProviderConfigError": "errors",
        "RateLimitedError": "errors",
        "RequestValidationError": "errors",
        "SessionValidationError": "errors",
        "SettlementError": "errors",
        "SignatureNotFoundError": "errors",
        "UnsupportedEndpointError": "errors",
        "ProviderSettings": "settings",
    },
)
