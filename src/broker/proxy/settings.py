"""Settings of ``0g-broker serve`` (pydantic-settings, environment prefix ``ZG_SERVE_``).

Times are seconds; money is neuron. ``api_key`` is a :class:`SecretStr` and never printed.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ServeSettings", "VerifyMode"]

#: ``off``: never verify; ``warn``: verify, report in ``X-0G-Verified`` and the metrics, answer
#: anyway; ``enforce``: a response that does not verify is refused with 502.
VerifyMode = Literal["off", "warn", "enforce"]


class ServeSettings(BaseSettings):
    """All settings of the local proxy.

    Attributes (environment ``ZG_SERVE_<NAME>``):
        provider: provider address to serve (required to start).
        host / port: bind address (default 127.0.0.1:3000).
        api_key: when set, clients must send ``Authorization: Bearer <api_key>``.
        verify: :data:`VerifyMode` (default ``warn``).
        images_timeout / chat_timeout / audio_timeout / default_timeout: upstream read timeouts per
            route family, seconds (600 / 300 / 300 / 60).
        connect_timeout: seconds to open an upstream connection.
        max_body_bytes: largest client body (default 32 MiB, the gateway's cap).
        max_connections: pooled upstream connections.
        auto_funding: start the auto-funding scheduler at start-up (when available).
        funding_interval: seconds between funding checks. funding_buffer_multiplier: keep the
            sub-account at ``unsettled + multiplier × 1 0G``.
        ensure_acknowledged: acknowledge the provider's signer at start-up when needed.
        recent_verifications: how many results ``/v1/account`` shows.
        extra_routes: forward routes outside the provider's service type instead of refusing them
            with 404 (gateways that also front another backend, e.g. the devnet stack's chat
            backend); see :mod:`broker.proxy.service_routes`.
        state_url: SQLAlchemy URL of serve's own state (async job traces, Pixazo requests, stored
            images); default ``sqlite:///<ZG_HOME>/serve.db``.
        media_ttl: seconds a generated image stays downloadable at its ``media_url`` (24 h).
        pixazo_long_side: pixels of the long side of Pixazo's ``image_size`` presets (1024, the
            Z-Image native size; lower it for a model with a smaller bound, e.g. 128 for ``tiny``).
        webhook_allow_private: allow ``X-Webhook-URL`` targets on loopback/private networks.
    """

    model_config = SettingsConfigDict(env_prefix="ZG_SERVE_", extra="ignore")

    provider: str | None = None
    host: str = "127.0.0.1"
    port: int = Field(3000, ge=0, le=65535)
    api_key: SecretStr | None = None
    verify: VerifyMode = "warn"
    images_timeout: float = Field(600.0, gt=0)
    chat_timeout: float = Field(300.0, gt=0)
    audio_timeout: float = Field(300.0, gt=0)
    default_timeout: float = Field(60.0, gt=0)
    connect_timeout: float = Field(10.0, gt=0)
    max_body_bytes: int = Field(32 << 20, ge=1)
    max_connections: int = Field(256, ge=1)
    auto_funding: bool = True
    funding_interval: float = Field(30.0, gt=0)
    funding_buffer_multiplier: int = Field(2, ge=1)
    ensure_acknowledged: bool = True
    recent_verifications: int = Field(20, ge=0, le=500)
    extra_routes: bool = False
    state_url: str | None = None
    media_ttl: float = Field(86400.0, gt=0)
    pixazo_long_side: int = Field(1024, ge=16, le=4096)
    webhook_allow_private: bool = False
