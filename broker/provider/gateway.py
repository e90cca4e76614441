"""The parts of one running gateway, bundled (built by
:func:`broker.provider.serve.build_gateway`)."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import anyio.to_thread

from broker.provider.accounts import AccountCache
from broker.provider.auth import Authenticator
from broker.provider.billing import FeeLedger
from broker.provider.db import Database
from broker.provider.limits import Limits
from broker.provider.settings import ProviderSettings
from broker.provider.signing import SignatureStore, StoredSignature
from broker.wire.fees import Fee

__all__ = ["INLINE_SIGN_MAX", "Gateway"]

#: Largest request + response (bytes) that :meth:`Gateway.record_response_async` hashes and signs
#: on the event loop; larger exchanges (images) are hashed in a worker thread.
INLINE_SIGN_MAX = 256 * 1024


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

    def _whitelisted(self, user: str) -> bool:
        whitelist = self.extra.get("whitelist")
        if whitelist is None:
            whitelist = self.extra["whitelist"] = frozenset(
                a.lower() for a in self.settings.whitelist
            )
        return user.lower() in whitelist

    def admit_sync(self, authorization: str | None, chat_id: str) -> tuple[str, int, int]:
        """B3, the per-user limits, B4 and the ``pending`` row (B4.6); blocking (chain reads
        when the caches miss).

        Args:
            authorization: the ``Authorization`` header. chat_id: the new request's id.

        Returns:
            ``(user, locked balance in neuron or -1 for a whitelisted user (not billed), the
            user's unsettled fees in neuron before this request)``. A billed user's in-flight slot
            is held: release it with ``limits.leave_user(user)``.

        Raises:
            SessionValidationError, RateLimitedError, RequestValidationError, RPCError: the
                refusal (no slot held, nothing written).
        """
        user = self.auth.authenticate(authorization)
        if self._whitelisted(user):
            return user, -1, 0
        self.limits.enter_user(user)
        try:
            unsettled = self.ledger.unsettled_fee(user)
            locked = self.auth.check_account(user, unsettled_fee=unsettled)
            self.ledger.open_request(chat_id, user, self.settings.service_type, self.settings.model)
        except BaseException:
            self.limits.leave_user(user)
            raise
        return user, locked, unsettled

    def _account_sync(self, user: str, chat_id: str) -> tuple[int, int]:
        unsettled = self.ledger.unsettled_fee(user)
        locked = self.auth.check_account(user, unsettled_fee=unsettled)
        self.ledger.open_request(chat_id, user, self.settings.service_type, self.settings.model)
        return unsettled, locked

    async def admit(self, authorization: str | None, chat_id: str) -> tuple[str, int, int]:
        """:meth:`admit_sync` for the event loop: when the token was verified before and the
        account, service and outstanding fees are all in memory, the checks run on the loop and
        only the ``pending`` row's commit is awaited (SQLite writer: no worker thread); otherwise
        the part that may read the chain runs in a worker thread. Same answers and errors."""
        user = self.auth.authenticate_cached(authorization)
        if user is None:
            return await anyio.to_thread.run_sync(self.admit_sync, authorization, chat_id)
        if self._whitelisted(user):
            return user, -1, 0
        self.limits.enter_user(user)
        try:
            unsettled = self.ledger.unsettled_fee_cached(user)
            locked = (
                None
                if unsettled is None
                else self.auth.check_account_cached(user, unsettled_fee=unsettled)
            )
            if unsettled is None or locked is None:
                unsettled, locked = await anyio.to_thread.run_sync(
                    self._account_sync, user, chat_id
                )
            else:
                await self.ledger.open_request_async(
                    chat_id, user, self.settings.service_type, self.settings.model
                )
        except BaseException:
            self.limits.leave_user(user)
            raise
        return user, locked, unsettled

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

    async def record_response_async(
        self,
        chat_id: str,
        request_body: bytes,
        response_body: bytes,
        *,
        fee: Fee | None,
        user: str | None = None,
        aliases: tuple[str, ...] = (),
    ) -> StoredSignature:
        """:meth:`record_response` for the event loop: on SQLite an exchange of at most
        :data:`INLINE_SIGN_MAX` bytes is signed on the loop and committed through
        :meth:`SQLiteWriter.arun <broker.sqlite_writer.SQLiteWriter.arun>` (inline on the loop's
        thread when the writer is idle, else by the writer and awaited; no worker thread);
        otherwise it runs in a worker thread. Committed (durable) on return, before the response
        is released; once asked for, the write is committed even if the awaiting task is
        cancelled (:meth:`FeeLedger.bill_async <broker.provider.billing.FeeLedger.bill_async>`)."""
        writer = self.db.writer
        if writer is None or len(request_body) + len(response_body) > INLINE_SIGN_MAX:
            return await anyio.to_thread.run_sync(
                functools.partial(
                    self.record_response,
                    chat_id,
                    request_body,
                    response_body,
                    fee=fee,
                    user=user,
                    aliases=aliases,
                )
            )
        sig, keys = self.signatures.sign(chat_id, request_body, response_body, aliases)
        store = self.signatures.store_op(keys, sig)
        if fee is not None:
            await self.ledger.bill_async(chat_id, fee, user=user, also=store)
        else:
            await writer.arun(store)
        self.signatures.remember(keys, sig)  # committed
        return sig

    def trigger_settlement(self) -> None:
        """Ask for an early settlement pass (no-op without a scheduler)."""
        if self.scheduler is not None:
            self.scheduler.trigger()
