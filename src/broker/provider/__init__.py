"""The provider gateway (settlement agent): ``0g-broker provider serve`` / ``register``.

Modules: ``settings`` (pydantic-settings, ``ZG_PROVIDER_*``), ``protocol`` (HTTP models), ``tee``
(TEE signer and ``/v1/quote``), ``auth`` (B3/B4), ``accounts`` (chain cache), ``limits`` (B6),
``signing`` (B7), ``db`` + ``billing`` (B9), ``settlement`` (B10), ``forward`` (B5), ``app`` (FastAPI),
``register`` (B11), ``serve`` (assembly), ``errors``.
"""

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
