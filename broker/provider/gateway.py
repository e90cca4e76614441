"""The parts of one running gateway, bundled (built by
:func:`broker.provider.serve.build_gateway`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from broker.provider.accounts import AccountCache
from broker.provider.auth import Authenticator
from broker.provider.billing import FeeLedger
from broker.provider.db import Database
from broker.provider.limits import Limits
from broker.provider.settings import ProviderSettings
from broker.provider.signing import SignatureStore

__all__ = ["Gateway"]


@dataclass
class Gateway:
    """Everything the HTTP app needs.

    Attributes:
        settings: the gateway settings.
        provider: the provider wallet address (checksummed).
        signer: the TEE signer (:mod:`broker.provider.tee`).
        db, ledger, signatures: storage.
        accounts, auth: chain state and request validation.
        limits: B6 limits.
        settler, scheduler: settlement (``scheduler`` may be ``None`` in tests).
        async_jobs: the :class:`~broker.provider.async_jobs.AsyncJobTracker` (made by the app
            when ``None``).
        revocations: the :class:`~broker.provider.revocations.RevocationWatcher` (started and
            stopped by the app's lifespan) or ``None``.
    """

    settings: ProviderSettings
    provider: str
    signer: Any
    db: Database
    ledger: FeeLedger
    signatures: SignatureStore
    accounts: AccountCache
    auth: Authenticator
    limits: Limits
    settler: Any = None
    scheduler: Any = None
    async_jobs: Any = None
    revocations: Any = None
    extra: dict[str, Any] = field(default_factory=dict)

    def trigger_settlement(self) -> None:
        """Ask for an early settlement pass (no-op without a scheduler)."""
        if self.scheduler is not None:
            self.scheduler.trigger()
