"""Settings of ``0g-broker serve`` (pydantic-settings, environment prefix ``ZG_SERVE_``).

Times are seconds; money is neuron. ``api_key`` is a :class:`SecretStr` and never printed; it can
come from ``ZG_SERVE_API_KEY`` or a file (``api_key_file`` / ``ZG_SERVE_API_KEY_FILE``), so that it
is not visible in the process list.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from broker.asgi.settings import AllowedHosts, AllowedOrigins
from broker.proxy.errors import ProxyConfigError

__all__ = ["ServeSettings", "VerifyMode", "read_api_key_file"]

#: ``off``: never verify; ``warn``: verify, report in ``X-0G-Verified`` and the metrics, answer
#: anyway; ``enforce``: a response that does not verify is refused with 502.
VerifyMode = Literal["off", "warn", "enforce"]


class ServeSettings(BaseSettings):
    """All settings of the local proxy.

    Attributes (environment ``ZG_SERVE_<NAME>``):
        provider: provider address to serve (required to start).
        host / port: bind address (default 127.0.0.1:3000).
        api_key: when set, clients must send ``Authorization: Bearer <api_key>`` (not empty).
        api_key_file: a file holding the API key (first non-blank line); read at validation into
            ``api_key`` (:func:`read_api_key_file`). Giving both, or an empty key, raises
            :class:`~broker.proxy.errors.ProxyConfigError`.
        allowed_hosts: ``Host`` names accepted besides the loopback names (``name`` or
            ``name:port``; ``*`` turns the DNS-rebinding check off); the environment takes a
            comma-separated list or a JSON list. See :mod:`broker.asgi.guard`.
        allowed_origins: web origins (``scheme://host[:port]``) allowed to call cross-origin
            (default none: web pages other than serve's own are refused).
        verify: :data:`VerifyMode` (default ``warn``).
        images_timeout / chat_timeout / audio_timeout / default_timeout: upstream read timeouts per
            route family, seconds (600 / 300 / 300 / 60).
        connect_timeout: seconds to open an upstream connection.
        max_body_bytes: largest client body (default 32 MiB, the gateway's cap).
        max_response_bytes: largest provider answer serve reads, bytes as received (default 256
            MiB): a non-streamed body, a stream read whole (``enforce``) or the whole of a relayed
            stream; beyond it the answer is cut off with a 502 ``upstream_response_too_large`` (or,
            in a relayed stream, an error event), so a hostile provider cannot exhaust serve's
            memory.
        max_connections: pooled upstream connections.
        upstream_keepalive: seconds an idle upstream connection is kept for reuse (3); below the
            provider's own idle timeout (uvicorn's default is 5 s), so a request never goes out on
            a connection the provider is closing at that moment (a 502 for a billed POST, which
            cannot be retried).
        auto_funding: start the auto-funding scheduler at start-up (when available).
        funding_interval: seconds between funding checks. funding_buffer_multiplier: keep the
            sub-account at ``unsettled + multiplier × 1 0G``.
        ensure_acknowledged: acknowledge the provider's signer at start-up when needed.
        recent_verifications: how many results ``/v1/account`` shows.
        chain_timeout: seconds the chain reads of ``/v1/account`` and ``/metrics`` may take (3);
            parts not read in time are reported as unavailable.
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
    api_key_file: Path | None = None
    allowed_hosts: AllowedHosts = Field(default_factory=list)
    allowed_origins: AllowedOrigins = Field(default_factory=list)
    verify: VerifyMode = "warn"
    images_timeout: float = Field(600.0, gt=0)
    chat_timeout: float = Field(300.0, gt=0)
    audio_timeout: float = Field(300.0, gt=0)
    default_timeout: float = Field(60.0, gt=0)
    connect_timeout: float = Field(10.0, gt=0)
    max_body_bytes: int = Field(32 << 20, ge=1)
    max_response_bytes: int = Field(256 << 20, ge=1)
    max_connections: int = Field(256, ge=1)
    upstream_keepalive: float = Field(3.0, gt=0)
    auto_funding: bool = True
    funding_interval: float = Field(30.0, gt=0)
    funding_buffer_multiplier: int = Field(2, ge=1)
    ensure_acknowledged: bool = True
    recent_verifications: int = Field(20, ge=0, le=500)
    chain_timeout: float = Field(3.0, gt=0)
    extra_routes: bool = False
    state_url: str | None = None
    media_ttl: float = Field(86400.0, gt=0)
    pixazo_long_side: int = Field(1024, ge=16, le=4096)
    webhook_allow_private: bool = False

    @model_validator(mode="after")
    def _load_api_key(self) -> ServeSettings:
        # ProxyConfigError (not ValueError): pydantic would echo the raw input, key included.
        if self.api_key_file is not None:
            if self.api_key is not None:
                raise ProxyConfigError(
                    "give the API key one way: ZG_SERVE_API_KEY (--api-key) "
                    "or an API key file, not both"
                )
            self.api_key = read_api_key_file(self.api_key_file)
        elif self.api_key is not None and not self.api_key.get_secret_value().strip():
            raise ProxyConfigError("the API key is empty (unset it to serve without a key)")
        return self


def read_api_key_file(path: Path) -> SecretStr:
    """The API key held in ``path`` (its first non-blank line, surrounding blanks dropped).

    Raises:
        ProxyConfigError: the file cannot be read or holds no key (the message names the path,
            never the content).
    """
    path = Path(path).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or "not UTF-8 text"
        raise ProxyConfigError(f"cannot read the API key file {path}: {reason}") from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        raise ProxyConfigError(f"the API key file {path} is empty")
    return SecretStr(lines[0])
