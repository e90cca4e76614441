"""Settings of the provider gateway (``0g-broker provider serve`` / ``register``).

Resolved from explicit arguments, then ``ZG_PROVIDER_*`` environment variables, then the defaults
below. Defaults follow ``provider-gateway.md`` B6 (limits), B7 (signature retention), B10
(settlement interval) and B11 (stake, verifiability, ``additionalInfo`` keys). Keys are
:class:`SecretStr` and never appear in reprs or logs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from broker.asgi.guard import split_list
from broker.config.settings import broker_home
from broker.wire.fees import SERVICE_TYPES

__all__ = ["ProviderSettings", "provider_home"]


def provider_home() -> Path:
    """``$ZG_HOME/provider`` (not created here)."""
    return broker_home() / "provider"


class ProviderSettings(BaseSettings):
    """All gateway settings; environment variables use the prefix ``ZG_PROVIDER_``.

    Money fields (prices, stake, minimum locked balance) are ints in neuron.
    Time fields are seconds.
    """

    model_config = SettingsConfigDict(
        env_prefix="ZG_PROVIDER_", extra="ignore", validate_default=True
    )

    # chain
    network: str = Field("devnet", description="Network preset name (broker.config.networks).")
    rpc_url: str | None = Field(None, description="JSON-RPC URL; overrides the preset.")
    inference_address: str | None = Field(None, description="InferenceServing proxy address.")
    private_key: SecretStr | None = Field(None, description="Provider wallet key (hex).")
    keystore: Path | None = Field(None, description="Encrypted keystore of the provider wallet.")
    keystore_password: SecretStr | None = Field(None, description="Password of that keystore.")
    # TEE signer
    tee_signer_key: SecretStr | None = Field(
        None,
        description="TEE signer key (hex) when not derived from dstack (no TDX); else the "
        "encrypted key file below.",
    )
    tee_key_file: Path | None = Field(
        None,
        description="Encrypted (keystore v3) no-TEE signer key file, generated once (default "
        "$ZG_HOME/provider/tee_signer.json, mode 0600).",
    )
    tee_key_password: SecretStr | None = Field(
        None,
        description="Password of the signer key file; required when neither dstack nor "
        "tee_signer_key provides the key.",
    )
    dstack_socket: Path = Field(
        Path("/var/run/dstack.sock"), description="dstack guest socket; used when it exists."
    )
    # service
    service_type: str = Field("text-to-image", description="One of SERVICE_TYPES.")
    model: str = Field("Tongyi-MAI/Z-Image-Turbo", description="Model name registered on chain.")
    input_price: int = Field(0, ge=0, description="Neuron per input token (or per input unit).")
    output_price: int = Field(10**15, ge=0, description="Neuron per output token / per image.")
    serving_url: str = Field(
        "http://127.0.0.1:3080", description="Public base URL users call ({url}/v1/proxy/...)."
    )
    target_url: str = Field(
        "http://127.0.0.1:8000",
        description="Backend base URL (worker or OpenAI-compatible, with /v1).",
    )
    image_backend_url: str | None = Field(None, description="Backend for image routes (override).")
    openai_backend_url: str | None = Field(
        None, description="Backend for chat and audio routes (override)."
    )
    additional_secret: dict[str, SecretStr] = Field(
        default_factory=dict, description="Headers added to backend calls (e.g. an API key)."
    )
    verifiability: str = Field("TeeML")
    provider_stake: int = Field(100 * 10**18, ge=0, description="Stake at first registration.")
    verifier_url: str = Field("")
    image_name: str = Field("")
    image_digest: str = Field("")
    tee_verifier: str = Field("dstack")
    model_info: dict = Field(default_factory=dict, description="Extra /v1/models card fields.")
    # storage
    db_url: str | None = Field(
        None,
        description="SQLAlchemy URL; default "
        "sqlite:///$ZG_HOME/provider/gateway.db (PostgreSQL supported).",
    )
    # limits (B6)
    per_ip_rps: float = Field(15.0, gt=0)
    per_ip_burst: int = Field(20, ge=1)
    handler_ip_rps: float = Field(
        10.0, gt=0, description="Per-IP rate of the non-proxy /v1 routes."
    )
    handler_ip_burst: int = Field(20, ge=1)
    per_user_rpm: int = Field(30, ge=1)
    per_user_burst: int = Field(5, ge=1)
    max_per_user_concurrent: int = Field(5, ge=1)
    max_global_concurrent: int = Field(20, ge=1)
    max_body_bytes: int = Field(32 << 20, ge=1)
    whitelist: list[str] = Field(default_factory=list)
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="IPs / CIDR blocks of the reverse proxies in front of the gateway; only their "
        "X-Forwarded-For / X-Real-IP name the client for the per-IP limits (default none: the "
        "peer address). Environment: comma-separated or a JSON list.",
    )
    # billing and settlement (B4, B10)
    min_locked_balance: int = Field(10**18, ge=0, description="Reserve in neuron (1 0G, B4.5).")
    account_cache_ttl: float = Field(
        600.0,
        ge=0,
        description="getAccount cache (B3.8, B4) while the revocation watcher keeps up.",
    )
    revocation_poll_interval: float = Field(
        2.0,
        gt=0,
        description="Seconds between polls of the revocation events (TokenRevoked, "
        "TokensRevoked, AllTokensRevoked, AccountDeleted); a revocation is refused within one "
        "block plus about this.",
    )
    account_fallback_ttl: float = Field(
        5.0,
        ge=0,
        description="getAccount cache while the revocation watcher is behind (node "
        "not answering eth_getLogs).",
    )
    service_cache_ttl: float = Field(900.0, ge=0)
    signature_ttl: float = Field(
        1200.0,
        gt=0,
        description="Seconds a response signature is served (B7); expired ones are "
        "deleted every signature_ttl seconds, so a row lives at most twice this.",
    )
    file_url_ttl: float = Field(
        3600.0,
        gt=0,
        description="Seconds an image `url` rewritten to "
        "/v1/proxy/files/<id> stays valid (the worker keeps files 1 h).",
    )
    settlement_interval: float = Field(600.0, gt=0)
    backend_timeout: float = Field(900.0, gt=0)
    # server
    host: str = Field("127.0.0.1")
    port: int = Field(3080, ge=0, le=65535)
    access_log: bool = Field(
        False,
        description="Log one line per HTTP request (uvicorn's access log; off by default: it "
        "costs CPU on every billed request and the ops page counts requests anyway).",
    )

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _split_proxies(cls, value: object) -> object:
        return split_list(value)

    @field_validator("trusted_proxies")
    @classmethod
    def _check_proxies(cls, value: list[str]) -> list[str]:
        from broker.provider.limits import parse_trusted_proxies

        parse_trusted_proxies(value)  # ValueError naming the bad entry
        return [v.strip() for v in value]

    @field_validator("service_type")
    @classmethod
    def _check_type(cls, value: str) -> str:
        if value not in SERVICE_TYPES:
            raise ValueError(f"service_type must be one of {', '.join(SERVICE_TYPES)}")
        return value

    def database_url(self) -> str:
        """The SQLAlchemy URL in use (``db_url`` or the SQLite default; its folder is created)."""
        if self.db_url:
            return self.db_url
        home = provider_home()
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        return f"sqlite:///{home / 'gateway.db'}"

    def tee_key_path(self) -> Path:
        """The generated signer key file: ``tee_key_file`` or
        ``$ZG_HOME/provider/tee_signer.json``."""
        return (self.tee_key_file or provider_home() / "tee_signer.json").expanduser()

    def backend_for(self, route: str) -> str:
        """Backend base URL for a normalised proxy route (``/images/...`` or other)."""
        if route.startswith("/images") and self.image_backend_url:
            return self.image_backend_url.rstrip("/")
        if not route.startswith("/images") and self.openai_backend_url:
            return self.openai_backend_url.rstrip("/")
        return self.target_url.rstrip("/")
