"""``InferenceBroker``: the user-side inference broker (user-broker.md §5–§8).

Method names mirror the SDK's ``broker.inference`` in snake_case. Wire behaviour (contract calls,
tokens, headers, signature URLs) is the SDK's; local differences, each a fix from §13:

* ``list_service`` reads **all** pages of ``getAllServices`` and filters afterwards (item 13);
* caches are keyed by checksummed addresses (item 19) and guarded by locks; ephemeral tokens are
  created single-flight per provider;
* ``invalidate_session`` drops the cached token and account info so a caller can retry once after
  the provider rejects a token (item 9; see :func:`is_session_rejection`);
* ``get_secret`` persists issued token ids in the fee store, so repeated keys get distinct ids
  (item 10);
* ``process_response`` never raises for HTTP or signature problems, refreshes a stale service once
  before declaring a signer mismatch, and keeps fees in SQLite (items 3, 11);
* creating a sub-account with 1 0G inside ``acknowledge_provider_signer`` /
  ``check_provider_signer_status`` is logged and reported in the return value, and can be turned off
  (item 7); refund lock times are never negative (item 8).

Auto-funding (§7.3–§7.4): :meth:`InferenceBroker.start_auto_funding` runs background cycles on an
APScheduler job per provider (:mod:`broker.funding`); otherwise a pluggable :class:`FundingStrategy`
runs at the start of :meth:`InferenceBroker.get_request_headers` — by default
:class:`~broker.funding.inline.InlineFunding` (the SDK's inline check, single-flight per provider
and rate-limited; it does not create missing sub-accounts). Pass ``funding=NoFunding()`` to turn it
off.

This module is the public facade. Like the SDK's processors (``inference/broker/{account,request,
response,verifier}.js``), the work is done by parts it composes, all sharing one
:class:`~broker.inference.state.BrokerState` (caches and their lock) owned by the broker:
:mod:`~broker.inference.services` (discovery, §5.1), :mod:`~broker.inference.accounts` (sub-accounts
and acknowledgement, §5.2–§5.3), :mod:`~broker.inference.sessions` (headers, session tokens and API
keys, §5.4–§5.5, §6) and :mod:`~broker.inference.responses` (fees and verification, §7–§8). Public
methods checksum the provider address, then delegate.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import httpx
from eth_account.signers.local import LocalAccount
from web3 import Web3

from broker.chain.addresses import checksum_address
from broker.chain.contracts import InferenceServingContract
from broker.chain.sender import TransactionSender
from broker.funding.checker import FundingChecker, FundingListener
from broker.funding.inline import InlineFunding
from broker.funding.policy import DEFAULT_BUFFER_MULTIPLIER, BufferMultiplier
from broker.funding.scheduler import DEFAULT_INTERVAL_S, FundingScheduler
from broker.funding.status import FundingStatus
from broker.inference.accounts import (
    ACCOUNT_INFO_TTL_S,
    SUB_ACCOUNT_CREATION_AMOUNT,
    AcknowledgeResult,
    SubAccounts,
)
from broker.inference.errors import AccountNotFoundError, SignerNotAcknowledgedError
from broker.inference.fee_store import FeeStore
from broker.inference.models import (
    Account,
    AccountDetail,
    ApiKeyInfo,
    ProviderModels,
    Service,
    ServiceMetadata,
    SignerStatus,
)
from broker.inference.response_signature import (
    DEFAULT_SIGNATURE_TIMEOUT_S,
    ResponseBinding,
    VerificationResult,
)
from broker.inference.responses import ResponseProcessor
from broker.inference.services import PAGE_LIMIT, SERVICE_CACHE_TTL_S, ServiceDirectory
from broker.inference.sessions import SESSION_REFRESH_MARGIN_MS, SessionManager
from broker.inference.state import BrokerState
from broker.ledger.models import TxResult

if TYPE_CHECKING:
    from pathlib import Path

    from broker.attestation import AttestationPolicy, VerificationReport
    from broker.ledger.broker import LedgerBroker

__all__ = [
    "ACCOUNT_INFO_TTL_S",
    "PAGE_LIMIT",
    "SERVICE_CACHE_TTL_S",
    "SESSION_REFRESH_MARGIN_MS",
    "SUB_ACCOUNT_CREATION_AMOUNT",
    "AcknowledgeResult",
    "BrokerParts",
    "FundingStrategy",
    "InferenceBroker",
    "NoFunding",
    "is_session_rejection",
]


class BrokerParts(Protocol):
    """What :meth:`InferenceBroker.from_broker` reads from an account's broker (a
    :class:`broker.broker.Broker`, which this package does not import: dependencies flow one way).

    Attributes:
        w3: the connected :class:`~web3.Web3`. sender: the account's transaction sender.
        wallet: the signer. inference_contract: the InferenceServing wrapper (its ``address``).
        ledger: the account's :class:`~broker.ledger.broker.LedgerBroker`.
        state_dir: the per-chain state folder (``fees.sqlite`` goes there) or ``None``.
    """

    w3: Web3
    sender: TransactionSender
    wallet: Any
    inference_contract: InferenceServingContract
    ledger: LedgerBroker
    state_dir: Path | None


class FundingStrategy(Protocol):
    """Hook run at the start of every :meth:`InferenceBroker.get_request_headers` (the SDK's inline
    check-and-fund cycle, user-broker.md 7.3). Must not raise for funding failures."""

    def before_request(self, broker: InferenceBroker, provider: str) -> None:
        """Called with the checksummed provider address before a token is issued."""


class NoFunding:
    """A :class:`FundingStrategy` that does nothing (fund explicitly or with the scheduler). The
    default is :class:`~broker.funding.inline.InlineFunding` (the SDK's inline check); pass
    ``funding=NoFunding()`` to turn it off."""

    def before_request(self, broker: InferenceBroker, provider: str) -> None:
        return None


def is_session_rejection(status_code: int, body: str | bytes = "") -> bool:
    """True when a provider response means the cached session token should be dropped and the
    request retried once (§13 item 9): HTTP 401/403, or 400 whose body mentions ``validate
    session``."""
    if status_code in (401, 403):
        return True
    if status_code == 400:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        return "validate session" in text
    return False


class InferenceBroker:
    """The inference side of one account (user-broker.md §5).

    Args:
        w3: a connected :class:`~web3.Web3`.
        sender: the account's :class:`~broker.chain.sender.TransactionSender` (every write).
        account: the account that signs session tokens (``LocalAccount`` / ``Wallet``).
        inference_contract_address: the InferenceServing proxy address.
        ledger_broker: the account's :class:`~broker.ledger.broker.LedgerBroker` (sub-account
            creation with ``transferFund``).
        fee_store: persistent fees / verification log / issued token ids (default: a
            :class:`~broker.inference.fee_store.FeeStore` at ``$ZG_HOME/inference.db``, opened on
            first use).
        fee_store_url: the SQLAlchemy URL of the default fee store when ``fee_store`` is not given
            (:meth:`from_broker` passes the broker's per-chain ``state_dir/fees.sqlite``).
        http_client: an ``httpx.Client`` for provider calls (default: one owned by the broker).
        funding: the :class:`FundingStrategy` run before each request header (default:
            :class:`~broker.funding.inline.InlineFunding`; ``NoFunding()`` turns it off).
        clock: ``() -> Unix seconds`` (float), for caches and refund lock times.

    It is the :class:`~broker.funding.source.FundingSource` of its auto-funding.
    """

    #: :class:`~broker.funding.source.FundingSource`: "no sub-account yet" errors.
    missing_account_errors: ClassVar[tuple[type[Exception], ...]] = (AccountNotFoundError,)
    #: :class:`~broker.funding.source.FundingSource`: errors meaning no session token can be made.
    no_session_errors: ClassVar[tuple[type[Exception], ...]] = (
        SignerNotAcknowledgedError,
        AccountNotFoundError,
    )

    def __init__(
        self,
        w3: Web3,
        sender: TransactionSender,
        account: LocalAccount,
        inference_contract_address: str,
        ledger_broker: LedgerBroker,
        *,
        fee_store: FeeStore | None = None,
        fee_store_url: str | None = None,
        http_client: httpx.Client | None = None,
        funding: FundingStrategy | None = None,
        clock: Any = time.time,
    ) -> None:
        self.w3 = w3
        self.sender = sender
        self.address: str = checksum_address(account.address, field="account")
        self.contract = InferenceServingContract(w3, inference_contract_address, sender)
        self.ledger = ledger_broker
        self._fee_store = fee_store
        self._fee_store_url = fee_store_url
        self._own_http = http_client is None
        self._http = http_client or httpx.Client(timeout=DEFAULT_SIGNATURE_TIMEOUT_S)
        self.funding: FundingStrategy = funding or InlineFunding()
        self._funding_checker: FundingChecker | None = None
        self._funding_scheduler: FundingScheduler | None = None
        self._closed = False
        # the processors share one state (caches and their lock), owned here and passed explicitly
        self._state = BrokerState(clock=clock)
        self._lock = self._state.lock
        self._services = ServiceDirectory(self.contract, self._state, self._http)
        self._accounts = SubAccounts(
            self.contract, self.address, ledger_broker, self._services, self._state
        )
        self._sessions = SessionManager(
            self.contract, self.address, account, self._accounts, self._open_fee_store, self._state
        )
        self._responses = ResponseProcessor(
            self.address, self._services, self._open_fee_store, self._http
        )

    @classmethod
    def from_broker(cls, broker: BrokerParts, **kwargs: Any) -> InferenceBroker:
        """Build from a :class:`broker.broker.Broker` (its w3, sender, wallet, contract and
        ledger; the fee store in its per-chain ``state_dir``, ``fees.sqlite``, unless ``fee_store``
        is given); :func:`broker.broker.create_broker` builds ``broker.inference`` with it.

        Args:
            broker: anything with the :class:`BrokerParts` attributes (a
                :class:`broker.broker.Broker`).
        """
        state_dir = getattr(broker, "state_dir", None)
        if state_dir is not None and "fee_store" not in kwargs:
            kwargs["fee_store_url"] = f"sqlite:///{state_dir / 'fees.sqlite'}"
        return cls(
            broker.w3,
            broker.sender,
            broker.wallet,
            broker.inference_contract.address,
            broker.ledger,
            **kwargs,
        )

    def __repr__(self) -> str:
        return f"InferenceBroker(address={self.address}, contract={self.contract.address})"

    def close(self) -> None:
        """End auto-funding for good, then close the owned HTTP clients and the fee store.

        Once it returns no auto-funding thread is left and no check runs any more: the
        :class:`~broker.funding.checker.FundingChecker` is closed first (a cycle in flight, in the
        scheduler's worker or in a request's inline check, stops at its next step and sends no
        transfer; one already sent is waited for), then every job is stopped and the scheduler's
        threads are joined. Afterwards ``start_auto_funding`` raises
        :class:`~broker.funding.errors.FundingClosedError` and the inline strategy checks nothing.
        Idempotent.
        """
        with self._lock:
            self._closed = True
            checker, scheduler = self._funding_checker, self._funding_scheduler
        if checker is not None:
            checker.close()
        if scheduler is not None:
            scheduler.shutdown(wait=True)
        if self._own_http:
            self._http.close()
        if self._fee_store is not None:
            self._fee_store.close()

    @property
    def fee_store(self) -> FeeStore:
        """The fee store (opened at the default location on first use when none was given)."""
        return self._open_fee_store()

    def _open_fee_store(self) -> FeeStore:
        with self._lock:
            if self._fee_store is None:
                self._fee_store = FeeStore(self._fee_store_url)
            return self._fee_store

    def _provider(self, provider: str) -> str:
        return checksum_address(provider, field="provider")

    # ------------------------------------------------------------------------- discovery (§5.1)

    def get_service(self, provider: str, *, refresh: bool = False) -> Service:
        """``getService(provider)``, cached 10 min (``refresh`` bypasses the cache).

        Returns:
            :class:`~broker.inference.models.Service` (prices in neuron per unit).

        Raises:
            InvalidAddressError: malformed address. UnknownProviderError: none registered.
            RPCError: the node is unreachable.
        """
        return self._services.get(self._provider(provider), refresh=refresh)

    def list_service(self, include_unacknowledged: bool = False) -> list[Service]:
        """Every registered service (all pages of ``getAllServices(offset, 50)``); unless
        ``include_unacknowledged``, only those whose TEE signer the contract owner acknowledged.

        Returns:
            list of :class:`~broker.inference.models.Service`, in contract order.
        """
        # PAGE_LIMIT is read here, at call time, so this module's constant stays the page size
        return self._services.list_all(include_unacknowledged, page_limit=PAGE_LIMIT)

    def get_service_metadata(self, provider: str, model: str | None = None) -> ServiceMetadata:
        """``{endpoint: url + "/v1/proxy", model: model or service.model}`` [0.9]. The model id is
        not validated locally (the provider rejects unknown ids)."""
        return self._services.metadata(self._provider(provider), model)

    def get_provider_models(self, provider: str) -> ProviderModels:
        """``GET {url}/v1/models`` [0.9] (no authentication, 10 s, ≤ 5 MB) with a strict shape
        check: ``{"object": "list", "data": [{"id": ...}, ...]}``.

        Raises:
            ProviderModelsError: HTTP failure, oversized or non-JSON body, or another shape.
        """
        return self._services.provider_models(self._provider(provider))

    # ------------------------------------------------------------------------- accounts (§5.2)

    def get_account(self, provider: str) -> Account:
        """``getAccount(user, provider)``: the sub-account (amounts in neuron).

        Raises:
            AccountNotFoundError: no sub-account. InvalidAddressError, RPCError.
        """
        return self._accounts.get(self._provider(provider))

    def get_account_with_detail(self, provider: str) -> AccountDetail:
        """The sub-account and its pending refunds with ``remain_time`` = seconds until unlock
        (``lockTime() − (now − createdAt)``, never below 0).

        Raises:
            AccountNotFoundError, InvalidAddressError, RPCError.
        """
        return self._accounts.detail(self._provider(provider))

    def list_account(self) -> list[Account]:
        """All of this user's sub-accounts (all pages of ``getAccountsByUser(user, offset,
        50)``)."""
        # PAGE_LIMIT is read here, at call time, so this module's constant stays the page size
        return self._accounts.list_all(page_limit=PAGE_LIMIT)

    # ----------------------------------------------------------------------- acknowledgement (§5.3)

    def acknowledge_provider_signer(
        self, provider: str, *, create_sub_account: bool = True
    ) -> AcknowledgeResult:
        """Acknowledge the provider's TEE signer for this user (``acknowledgeTEESigner(p, true)``).

        Like the SDK, a missing sub-account is first created with ``transferFund`` of 1 0G (logged
        and reported in the result; pass ``create_sub_account=False`` to refuse instead). Does not
        check the owner-level ``teeSignerAcknowledged``.

        Returns:
            :class:`AcknowledgeResult`.

        Raises:
            ProviderNotRegisteredError: no service is registered at ``provider`` (checked first,
                also when a sub-account exists, so a mistyped address is never acknowledged);
            AccountNotFoundError (``create_sub_account=False``); ledger errors (no ledger,
            insufficient balance); chain errors.
        """
        provider = self._provider(provider)
        self.ledger.require_registered(
            provider, hint="0g-broker list-providers shows the registered providers"
        )
        return self._accounts.acknowledge(provider, create_sub_account)

    def acknowledged(self, provider: str) -> bool:
        """Whether this user acknowledged the provider's signer (positive answers cached 10 min).

        Raises:
            AccountNotFoundError: no sub-account.
        """
        return self._accounts.acknowledged(self._provider(provider))

    def check_provider_signer_status(
        self, provider: str, *, create_sub_account: bool = True
    ) -> SignerStatus:
        """Whether the contract owner acknowledged the provider's TEE signer.

        Like the SDK, a missing sub-account is first created with 1 0G (logged; reported as
        ``sub_account_created``; ``create_sub_account=False`` skips the creation).

        Returns:
            :class:`~broker.inference.models.SignerStatus`: ``is_acknowledged`` iff
            ``teeSignerAcknowledged`` and a non-zero signer address.
        """
        return self._accounts.signer_status(self._provider(provider), create_sub_account)

    def revoke_acknowledge_provider_signer(self, provider: str) -> TxResult:
        """Withdraw this user's acknowledgement (``acknowledgeTEESigner(p, false)``).

        Raises:
            RevokeAcknowledgementError: the sub-account balance is not zero (nothing sent).
            AccountNotFoundError, chain errors.
        """
        return self._accounts.revoke_acknowledgement(self._provider(provider))

    def acknowledge_provider_tee_signer(self, provider: str) -> TxResult:
        """Contract-owner only: ``acknowledgeTEESignerByOwner(provider)``.

        Raises:
            ContractRevertError (e.g. ``OwnableUnauthorizedAccount`` for non-owners), chain errors.
        """
        return self._accounts.owner_acknowledge(self._provider(provider))

    def revoke_provider_tee_signer_acknowledgement(self, provider: str) -> TxResult:
        """Contract-owner only: ``revokeTEESignerAcknowledgement(provider)``."""
        return self._accounts.owner_revoke(self._provider(provider))

    # ------------------------------------------------------------------------- headers (§5.4, §6)

    def get_request_headers(self, provider: str, content: Any = None) -> dict[str, str]:
        """``{"Authorization": "Bearer app-sk-…"}`` for a request to ``provider``.

        Runs the funding strategy, requires this user's acknowledgement, then reuses the cached
        ephemeral token (id 255, 24 h) while more than 1 h is left, else signs a new one with the
        generation read from ``getAccount`` (cached 5 min). ``content`` is ignored (SDK
        compatibility). The header is a bearer credential: never log it.

        Raises:
            SignerNotAcknowledgedError: the user has not acknowledged the provider's signer (or has
                no sub-account). InvalidAddressError, chain errors.
        """
        provider = self._provider(provider)
        self.funding.before_request(self, provider)
        return self.session_headers(provider)

    def session_headers(self, provider: str) -> dict[str, str]:
        """:meth:`get_request_headers` without the funding strategy (used by the funding cycle
        itself for ``/unsettledfee``). Same return value and errors."""
        return self._sessions.headers(self._provider(provider))

    def invalidate_session(self, provider: str) -> None:
        """Forget the cached ephemeral token and account info of ``provider`` (call it when the
        provider rejects a token, then retry once; see :func:`is_session_rejection`)."""
        self._sessions.invalidate(self._provider(provider))

    # ---------------------------------------------------------------------- auto-funding (§7.3-7.4)

    @property
    def funding_checker(self) -> FundingChecker:
        """The broker's :class:`~broker.funding.checker.FundingChecker` (created on first use),
        shared by the scheduler and the inline strategy so cycles are single-flight per provider.
        After :meth:`close` it is closed (it runs no cycle)."""
        with self._lock:
            if self._funding_checker is None:
                self._funding_checker = FundingChecker(self)
                if self._closed:
                    self._funding_checker.close()
            return self._funding_checker

    def _scheduler(self) -> FundingScheduler:
        with self._lock:
            if self._funding_scheduler is None:
                self._funding_scheduler = FundingScheduler(self.funding_checker)
            return self._funding_scheduler

    def start_auto_funding(
        self,
        provider: str,
        interval: float = DEFAULT_INTERVAL_S,
        buffer_multiplier: BufferMultiplier = DEFAULT_BUFFER_MULTIPLIER,
    ) -> FundingStatus:
        """SDK ``startAutoFunding``: keep the sub-account's locked balance at or above the
        provider's unsettled fee + ``buffer_multiplier`` × 1 0G, checking every ``interval``
        **seconds** (the SDK takes milliseconds). Runs one cycle now, then in the background (one
        APScheduler job per provider, never overlapping); while it runs, ``get_request_headers``
        skips its inline check for this provider. Restarting replaces the settings.

        Args:
            provider: provider address.
            interval: seconds between checks (> 0; default 30).
            buffer_multiplier: 0G above the unsettled fee (int, ``Decimal`` or decimal string;
                default 2).

        Returns:
            :class:`~broker.funding.status.FundingStatus` after the first cycle.

        Raises:
            InvalidAddressError, FundingConfigError. FundingClosedError: the broker was closed
            (also when :meth:`close` ran during the first cycle; no job is left). Funding failures
            are reported in the status (``last_error``) and to listeners, never raised.
        """
        return self._scheduler().start(self._provider(provider), interval, buffer_multiplier)

    def stop_auto_funding(self, provider: str | None = None) -> None:
        """SDK ``stopAutoFunding``: stop the job of ``provider``, or of every provider when
        ``None``; when none is left the scheduler is shut down (``wait=False``; no thread keeps the
        process alive)."""
        with self._lock:
            scheduler = self._funding_scheduler
        if scheduler is not None:
            scheduler.stop(None if provider is None else self._provider(provider))

    def auto_funding_status(self, provider: str) -> FundingStatus:
        """The :class:`~broker.funding.status.FundingStatus` of ``provider`` (last check, last
        transfer, last error, unsettled fee and locked balance in neuron)."""
        return self.funding_checker.status(self._provider(provider))

    def add_funding_listener(self, callback: FundingListener) -> Any:
        """Call ``callback(FundingEvent)`` for every funding decision (``check`` / ``transfer`` /
        ``error``), from the thread that ran the cycle. Returns a zero-argument function that
        removes the listener."""
        return self.funding_checker.add_listener(callback)

    # ------------------------------------------------------------------------- attestation (§9)

    def verify_service(
        self,
        provider: str,
        output_dir: str | Path | None = None,
        *,
        on_step: Any = None,
        collateral: Any = None,
        now: Any = None,
        policy: AttestationPolicy | None = None,
    ) -> VerificationReport:
        """SDK ``verifyService(provider, outputDir, onLog)``: verify the provider's TEE attestation
        locally; ``on_step(step)`` receives each progress line as it happens. Delegates to
        :func:`broker.inference.verify.verify_service` with this broker as the service lookup (see
        there for arguments, the returned :class:`~broker.attestation.VerificationReport` with the
        SDK's summary, and the errors raised)."""
        from broker.inference.verify import verify_service

        return verify_service(
            self,
            provider,
            output_dir,
            on_step=on_step,
            collateral=collateral,
            now=now,
            policy=policy,
        )

    # ------------------------------------------------------------------------- API keys (§5.5)

    def get_secret(
        self, provider: str, token_id: int | None = None, duration: int | None = None
    ) -> ApiKeyInfo:
        """Create a persistent API key (``app-sk-…``, token id 0–254) — SDK ``createApiKey``.

        Args:
            provider: provider address.
            token_id: 0–254; default the lowest id neither revoked on chain nor already issued
                locally in the current generation.
            duration: lifetime in **milliseconds**; ``None``/0 = never expires.

        Returns:
            :class:`~broker.inference.models.ApiKeyInfo` (``raw_token`` is a secret).

        Raises:
            InvalidTokenIdError: id out of range or already revoked, or no id left.
        """
        return self._sessions.create_api_key(self._provider(provider), token_id, duration)

    def revoke_token(self, provider: str, token_id: int) -> TxResult:
        """Revoke one persistent key: ``revokeToken(provider, tokenId)``.

        Raises:
            InvalidTokenIdError: 255 (``Cannot revoke ephemeral token individually…``) or outside
                0–254 (nothing sent). Chain errors.
        """
        return self._sessions.revoke_token(self._provider(provider), token_id)

    def revoke_all_tokens(self, provider: str) -> TxResult:
        """Revoke every token of this user for ``provider``: ``revokeAllTokens`` bumps the
        generation and clears the bitmap; the cached session token is dropped."""
        return self._sessions.revoke_all_tokens(self._provider(provider))

    # ------------------------------------------------------------------------- responses (§7, §8)

    def process_response_detailed(
        self,
        provider: str,
        chat_id: str | None = None,
        content: str | bytes | Mapping[str, Any] | None = None,
        *,
        model: str | None = None,
        response_body: bytes | None = None,
        request_body: bytes | None = None,
    ) -> VerificationResult:
        """Account the fee of ``content`` and verify the response signature of ``chat_id``.

        Args:
            provider: provider address.
            chat_id: from :mod:`broker.inference.chat_id`; ``None`` skips verification.
            content: what the fee extractor of the service type reads (chatbot: the ``usage`` JSON
                or the whole completion body; images: the request JSON with ``n``; speech: usage).
                The fee (neuron, on-chain prices) is added to the fee store.
            model: ``model`` query of the signature fetch (default: the on-chain default model).
            response_body: the response bytes exactly as received (streams: the whole raw SSE
                stream; not decompressed). Given, the signed text must name their sha256
                (``response_hash_mismatch`` otherwise); without it only the signature is checked
                (the SDK's behaviour), and the result says ``binding="signature_only"``.
            request_body: the request body as the gateway forwarded it
                (:mod:`broker.wire.forwarded_request`); checked only with ``response_body``
                (``request_hash_mismatch``); without it the result says
                ``binding="response_only"``.

        Right after a stream the provider may not have stored the signature yet: its "chat id not
        found" answer (B7) is retried up to 3 fetches within about 1.5 s
        (:data:`~broker.inference.response_signature.SIGNATURE_NOT_FOUND_ATTEMPTS`); a 429 is
        retried after its ``Retry-After`` (10 s in all); other failures are not retried.

        Returns:
            :class:`~broker.inference.response_signature.VerificationResult`; results with a chat
            ID are also recorded in the fee store. Never raises for HTTP or signature problems or an
            unknown service type (those give ``verified=False`` or a logged, skipped fee).

        Raises:
            InvalidAddressError, UnknownProviderError, RPCError.
        """
        binding = None
        if response_body is not None:
            binding = ResponseBinding.of(request_body=request_body, response_body=response_body)
        return self._responses.process(self._provider(provider), chat_id, content, model, binding)

    def process_response(
        self,
        provider: str,
        chat_id: str | None = None,
        content: str | bytes | Mapping[str, Any] | None = None,
        *,
        response_body: bytes | None = None,
        request_body: bytes | None = None,
    ) -> bool | None:
        """SDK ``processResponse``: ``None`` without a chat ID, else whether the TEE signature
        verified (bound to ``response_body`` / ``request_body`` when given). See
        :meth:`process_response_detailed`."""
        return self.process_response_detailed(
            provider, chat_id, content, response_body=response_body, request_body=request_body
        ).verified
