"""The parts of one running gateway, bundled (built by
:func:`broker.provider.serve.build_gateway`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from broker.provider.accounts import AccountCache
from broker.provider.auth import Authenticator
from broker.provider.billing import Fee, FeeLedger
from broker.provider.db import Database
from broker.provider.limits import Limits
from broker.provider.settings import ProviderSettings
from broker.provider.signing import SignatureStore, StoredSignature

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

    def record_response(
        self,
        chat_id: str,
        request_body: bytes,
        response_body: bytes,
        *,
        fee: Fee | None,
        user: str | None = None,
        aliases: tuple[str, ...] = (),
    ) -> StoredSignature:
        """Sign a completed exchange and store its fee and signature in **one** commit, before the
        response is released (B5, B7, B9); blocking (run it off the event loop).

        Args:
            chat_id: the ``ZG-Res-Key`` (the request row's id). request_body: the body as
                forwarded. response_body: the raw backend bytes (what the signature covers).
            fee: the request's fee (``None``: not billed, e.g. a whitelisted user).
            user: the billed user when known (keeps the in-memory outstanding total exact).
            aliases: further ids for the signature (the response's completion ``id``).

        Returns:
            The stored signature (also kept in memory for the signature endpoint).
        """
        sig, keys = self.signatures.sign(chat_id, request_body, response_body, aliases)
        store = self.signatures.store_op(keys, sig)
        if fee is not None:
            self.ledger.bill(chat_id, fee, user=user, also=store)
        else:
            self.db.write(store)
        self.signatures.remember(keys, sig)  # committed
        return sig

    def trigger_settlement(self) -> None:
        """Ask for an early settlement pass (no-op without a scheduler)."""
        if self.scheduler is not None:
            self.scheduler.trigger()
