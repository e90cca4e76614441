"""``InferenceBroker``: the user-side inference broker (user-broker.md §5–§8).

Method names mirror the SDK's ``broker.inference`` in snake_case. Wire behaviour (contract calls,
tokens, headers, signature URLs) is the SDK's; local differences, each a fix from §13:

* ``list_service`` reads **all** pages of ``getAllServices`` and filters afterwards (item 13);
* caches are keyed by checksummed addresses (item 19) and guarded by locks; ephemeral tokens are
  created single-flight per provider;
* ``invalidate_session`` drops the cached token and account info so a caller can retry once after the
  provider rejects a token (item 9; see :func:`is_session_rejection`);
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
:class:`~broker.funding.inline.InlineFunding` (the SDK's inline check, single-flight per provider and
rate-limited; it does not create missing sub-accounts). Pass ``funding=NoFunding()`` to turn it off.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import httpx
from eth_account.signers.local import LocalAccount
from web3 import Web3

from broker.chain.addresses import checksum_address
from broker.chain.contracts import InferenceServingContract
from broker.chain.errors import error_class
from broker.chain.sender import TransactionSender, call_view
from broker.funding.checker import FundingChecker, FundingListener
from broker.funding.inline import InlineFunding
from broker.funding.policy import DEFAULT_BUFFER_MULTIPLIER, BufferMultiplier
from broker.funding.scheduler import DEFAULT_INTERVAL_S, FundingScheduler
from broker.funding.status import FundingStatus
from broker.inference.errors import (
    AccountNotFoundError,
    InvalidTokenIdError,
    ProviderModelsError,
    RevokeAcknowledgementError,
    SignerNotAcknowledgedError,
    UnknownProviderError,
    UnknownServiceTypeError,
    UsageError,
)
from broker.inference.fee_store import FeeStore
from broker.inference.fees import fee_for_content
from broker.inference.models import (
    Account,
    AccountDetail,
    ApiKeyInfo,
    ProviderModelInfo,
    ProviderModels,
    Service,
    ServiceMetadata,
    SignerStatus,
)
from broker.inference.response_signature import (
    DEFAULT_SIGNATURE_TIMEOUT_S,
    VerificationReason,
    VerificationResult,
    verify_response_signature,
)
from broker.inference.token import (
    EPHEMERAL_TOKEN_ID,
    MAX_PERSISTENT_TOKEN_ID,
    SessionToken,
    authorization_header,
    is_token_revoked,
    lowest_free_token_id,
    new_session_token,
    now_ms,
    sign_session_token,
)
from broker.ledger.models import TxResult
from broker.units import Neuron

if TYPE_CHECKING:
    from pathlib import Path

    from broker.attestation import AttestationPolicy, VerificationReport
    from broker.broker import Broker
    from broker.ledger.broker import LedgerBroker

__all__ = [
    "ACCOUNT_INFO_TTL_S",
    "PAGE_LIMIT",
    "SERVICE_CACHE_TTL_S",
    "SESSION_REFRESH_MARGIN_MS",
    "SUB_ACCOUNT_CREATION_AMOUNT",
    "AcknowledgeResult",
    "FundingStrategy",
    "InferenceBroker",
    "NoFunding",
    "is_session_rejection",
]

logger = logging.getLogger(__name__)

SERVICE_CACHE_TTL_S = 600.0
ACK_CACHE_TTL_S = 600.0
ACCOUNT_INFO_TTL_S = 300.0
SESSION_REFRESH_MARGIN_MS = 3_600_000
PAGE_LIMIT = 50
SUB_ACCOUNT_CREATION_AMOUNT = 10**18  # neuron (1 0G, MIN_TRANSFER_AMOUNT)
MODELS_TIMEOUT_S = 10.0
MODELS_MAX_BYTES = 5_000_000

_SIGNATURE_RETRY_REASONS = (
    VerificationReason.SIGNER_NOT_ACKNOWLEDGED,
    VerificationReason.SIGNATURE_MISMATCH,
    VerificationReason.NOT_VERIFIABLE,
)


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


@dataclass(frozen=True, slots=True)
class AcknowledgeResult:
    """What :meth:`InferenceBroker.acknowledge_provider_signer` did.

    Attributes:
        provider: checksummed provider address.
        sub_account_created: a sub-account was created first by transferring ``transferred``.
        transferred: neuron moved from the ledger to create the sub-account (0 if none).
        already_acknowledged: nothing to do; no acknowledgement transaction was sent.
        tx: the ``acknowledgeTEESigner`` transaction, if one was sent.
    """

    provider: str
    sub_account_created: bool
    transferred: int
    already_acknowledged: bool
    tx: TxResult | None


def is_session_rejection(status_code: int, body: str | bytes = "") -> bool:
    """True when a provider response means the cached session token should be dropped and the request
    retried once (§13 item 9): HTTP 401/403, or 400 whose body mentions ``validate session``."""
    if status_code in (401, 403):
        return True
    if status_code == 400:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        return "validate session" in text
    return False


@dataclass
class _Session:
    token: SessionToken
    api_key: str


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
        http_client: an ``httpx.Client`` for provider calls (default: one owned by the broker).
        funding: the :class:`FundingStrategy` run before each request header (default:
            :class:`~broker.funding.inline.InlineFunding`; ``NoFunding()`` turns it off).
        clock: ``() -> Unix seconds`` (float), for caches and refund lock times.
    """

    def __init__(
        self,
        w3: Web3,
        sender: TransactionSender,
        account: LocalAccount,
        inference_contract_address: str,
        ledger_broker: LedgerBroker,
        *,
        fee_store: FeeStore | None = None,
        http_client: httpx.Client | None = None,
        funding: FundingStrategy | None = None,
        clock: Any = time.time,
    ) -> None:
        self.w3 = w3
        self.sender = sender
        self._account = account
        self.address: str = checksum_address(account.address, field="account")
        self.contract = InferenceServingContract(w3, inference_contract_address, sender)
        self.ledger = ledger_broker
        self._fee_store = fee_store
        self._own_http = http_client is None
        self._http = http_client or httpx.Client(timeout=DEFAULT_SIGNATURE_TIMEOUT_S)
        self.funding: FundingStrategy = funding or InlineFunding()
        self._funding_checker: FundingChecker | None = None
        self._funding_scheduler: FundingScheduler | None = None
        self._clock = clock
        self._lock = threading.RLock()
        self._provider_locks: dict[str, threading.Lock] = {}
        self._services: dict[str, tuple[Service, float]] = {}
        self._acks: dict[str, float] = {}
        self._account_info: dict[str, tuple[int, int, float]] = {}
        self._sessions: dict[str, _Session] = {}

    @classmethod
    def from_broker(cls, broker: Broker, **kwargs: Any) -> InferenceBroker:
        """Build from a :class:`broker.broker.Broker` (its w3, sender, wallet, contract and
        ledger); suitable for :func:`broker.broker.register_inference_factory`."""
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
        """Stop auto-funding (no scheduler thread is left), close the owned HTTP clients and the
        fee store."""
        self.stop_auto_funding()
        with self._lock:
            checker, self._funding_checker = self._funding_checker, None
        if checker is not None:
            checker.close()
        if self._own_http:
            self._http.close()
        if self._fee_store is not None:
            self._fee_store.close()

    @property
    def fee_store(self) -> FeeStore:
        """The fee store (opened at the default location on first use when none was given)."""
        with self._lock:
            if self._fee_store is None:
                self._fee_store = FeeStore()
            return self._fee_store

    def _provider(self, provider: str) -> str:
        return checksum_address(provider, field="provider")

    def _provider_lock(self, provider: str) -> threading.Lock:
        with self._lock:
            return self._provider_locks.setdefault(provider, threading.Lock())

    # ------------------------------------------------------------------------- discovery (§5.1)

    def _fetch_service(self, provider: str) -> Service:
        try:
            service = Service.from_chain(self.contract.get_service(provider))
        except error_class("ServiceNotExist"):
            raise UnknownProviderError(f"no service registered for provider {provider}") from None
        with self._lock:
            self._services[provider] = (service, self._clock() + SERVICE_CACHE_TTL_S)
        return service

    def _cached_service(self, provider: str) -> tuple[Service, bool]:
        """(service, came_from_cache)."""
        with self._lock:
            entry = self._services.get(provider)
        if entry is not None and entry[1] > self._clock():
            return entry[0], True
        return self._fetch_service(provider), False

    def get_service(self, provider: str, *, refresh: bool = False) -> Service:
        """``getService(provider)``, cached 10 min (``refresh`` bypasses the cache).

        Returns:
            :class:`~broker.inference.models.Service` (prices in neuron per unit).

        Raises:
            InvalidAddressError: malformed address. UnknownProviderError: none registered.
            RPCError: the node is unreachable.
        """
        provider = self._provider(provider)
        if refresh:
            return self._fetch_service(provider)
        return self._cached_service(provider)[0]

    def list_service(self, include_unacknowledged: bool = False) -> list[Service]:
        """Every registered service (all pages of ``getAllServices(offset, 50)``); unless
        ``include_unacknowledged``, only those whose TEE signer the contract owner acknowledged.

        Returns:
            list of :class:`~broker.inference.models.Service`, in contract order.
        """
        services: list[Service] = []
        offset = 0
        while True:
            page, total = self.contract.get_all_services(offset, PAGE_LIMIT)
            services.extend(Service.from_chain(s) for s in page)
            offset += len(page)
            if not page or offset >= total:
                break
        expiry = self._clock() + SERVICE_CACHE_TTL_S
        with self._lock:
            for s in services:
                self._services[checksum_address(s.provider)] = (s, expiry)
        if include_unacknowledged:
            return services
        return [s for s in services if s.tee_signer_acknowledged]

    def get_service_metadata(self, provider: str, model: str | None = None) -> ServiceMetadata:
        """``{endpoint: url + "/v1/proxy", model: model or service.model}`` [0.9]. The model id is
        not validated locally (the provider rejects unknown ids)."""
        service = self.get_service(provider)
        return ServiceMetadata(endpoint=service.url + "/v1/proxy", model=model or service.model)

    def get_provider_models(self, provider: str) -> ProviderModels:
        """``GET {url}/v1/models`` [0.9] (no authentication, 10 s, ≤ 5 MB) with a strict shape check:
        ``{"object": "list", "data": [{"id": ...}, ...]}``.

        Raises:
            ProviderModelsError: HTTP failure, oversized or non-JSON body, or another shape.
        """
        service = self.get_service(provider)
        url = service.url.rstrip("/") + "/v1/models"
        try:
            response = self._http.get(url, timeout=MODELS_TIMEOUT_S)
        except httpx.HTTPError as exc:
            raise ProviderModelsError(f"GET {url} failed: {type(exc).__name__}") from None
        if not response.is_success:
            raise ProviderModelsError(f"GET {url} returned HTTP {response.status_code}")
        if len(response.content) > MODELS_MAX_BYTES:
            raise ProviderModelsError(f"GET {url}: body larger than {MODELS_MAX_BYTES} bytes")
        try:
            body = response.json()
        except ValueError:
            raise ProviderModelsError(f"GET {url}: response is not JSON") from None
        if (
            not isinstance(body, dict)
            or body.get("object") != "list"
            or not isinstance(body.get("data"), list)
        ):
            raise ProviderModelsError(f'GET {url}: expected {{"object": "list", "data": [...]}}')
        try:
            models = [ProviderModelInfo.model_validate(m) for m in body["data"]]
        except ValueError as exc:
            raise ProviderModelsError(f"GET {url}: invalid model entry ({exc})") from None
        return ProviderModels(
            provider=service.provider, url=service.url, multi_model=service.multi_model,
            price_denomination=service.price_denomination, default_model=service.model,
            models=models,
        )  # fmt: skip

    # ------------------------------------------------------------------------- accounts (§5.2)

    def _read_account(self, provider: str) -> Account | None:
        try:
            account = self.contract.get_account(self.address, provider)
        except error_class("AccountNotExists"):
            return None
        with self._lock:
            self._account_info[provider] = (
                account.generation,
                account.revoked_bitmap,
                self._clock() + ACCOUNT_INFO_TTL_S,
            )
        return account

    def get_account(self, provider: str) -> Account:
        """``getAccount(user, provider)``: the sub-account (amounts in neuron).

        Raises:
            AccountNotFoundError: no sub-account. InvalidAddressError, RPCError.
        """
        provider = self._provider(provider)
        account = self._read_account(provider)
        if account is None:
            raise AccountNotFoundError(
                f"no sub-account for provider {provider}; transfer funds to it first "
                "(ledger.transfer_fund)"
            )
        return account

    def get_account_with_detail(self, provider: str) -> AccountDetail:
        """The sub-account and its pending refunds with ``remain_time`` = seconds until unlock
        (``lockTime() − (now − createdAt)``, never below 0).

        Raises:
            AccountNotFoundError, InvalidAddressError, RPCError.
        """
        account = self.get_account(provider)
        lock_time = self.contract.lock_time()
        return AccountDetail.build(account, lock_time, int(self._clock()))

    def list_account(self) -> list[Account]:
        """All of this user's sub-accounts (all pages of ``getAccountsByUser(user, offset, 50)``)."""
        accounts: list[Account] = []
        offset = 0
        fns = self.contract.contract.functions
        while True:
            page, total = call_view(fns.getAccountsByUser(self.address, offset, PAGE_LIMIT))
            accounts.extend(Account.from_tuple(a) for a in page)
            offset += len(page)
            if not page or offset >= int(total):
                break
        return accounts

    def _account_info_cached(self, provider: str) -> tuple[int, int]:
        """(generation, revoked_bitmap), cached 5 min; (0, 0) when no account exists."""
        with self._lock:
            entry = self._account_info.get(provider)
        if entry is not None and entry[2] > self._clock():
            return entry[0], entry[1]
        account = self._read_account(provider)
        return (0, 0) if account is None else (account.generation, account.revoked_bitmap)

    # ------------------------------------------------------------------------- acknowledgement (§5.3)

    def _ensure_sub_account(self, provider: str, create: bool) -> tuple[Account, bool]:
        account = self._read_account(provider)
        if account is not None:
            return account, False
        if not create:
            raise AccountNotFoundError(
                f"no sub-account for provider {provider} (create_sub_account=False)"
            )
        logger.warning(
            "creating the sub-account for provider %s: transferring 1 0G from the ledger", provider
        )
        self.ledger.transfer_fund(provider, "inference", Neuron(SUB_ACCOUNT_CREATION_AMOUNT))
        account = self._read_account(provider)
        if account is None:  # pragma: no cover - the transfer creates it
            raise AccountNotFoundError(f"sub-account for {provider} missing after transferFund")
        return account, True

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
            AccountNotFoundError (``create_sub_account=False``); ledger errors (no ledger,
            insufficient balance); chain errors.
        """
        provider = self._provider(provider)
        account, created = self._ensure_sub_account(provider, create_sub_account)
        transferred = SUB_ACCOUNT_CREATION_AMOUNT if created else 0
        if account.acknowledged:
            with self._lock:
                self._acks[provider] = self._clock() + ACK_CACHE_TTL_S
            return AcknowledgeResult(provider, created, transferred, True, None)
        receipt = self.contract.acknowledge_tee_signer(provider, True)
        with self._lock:
            self._acks[provider] = self._clock() + ACK_CACHE_TTL_S
        return AcknowledgeResult(
            provider, created, transferred, False, TxResult.from_receipt(receipt)
        )

    def acknowledged(self, provider: str) -> bool:
        """Whether this user acknowledged the provider's signer (positive answers cached 10 min).

        Raises:
            AccountNotFoundError: no sub-account.
        """
        provider = self._provider(provider)
        with self._lock:
            expiry = self._acks.get(provider)
        if expiry is not None and expiry > self._clock():
            return True
        account = self.get_account(provider)
        if account.acknowledged:
            with self._lock:
                self._acks[provider] = self._clock() + ACK_CACHE_TTL_S
        return account.acknowledged

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
        provider = self._provider(provider)
        created = False
        if create_sub_account:
            _, created = self._ensure_sub_account(provider, True)
        service = self.get_service(provider, refresh=True)
        signer = service.tee_signer_address
        zero = not signer or int(signer, 16) == 0
        if service.tee_signer_acknowledged and not zero:
            return SignerStatus(True, signer, created)
        return SignerStatus(False, "" if zero else signer, created)

    def revoke_acknowledge_provider_signer(self, provider: str) -> TxResult:
        """Withdraw this user's acknowledgement (``acknowledgeTEESigner(p, false)``).

        Raises:
            RevokeAcknowledgementError: the sub-account balance is not zero (nothing sent).
            AccountNotFoundError, chain errors.
        """
        provider = self._provider(provider)
        account = self.get_account(provider)
        if account.balance > 0:
            raise RevokeAcknowledgementError(
                "Cannot revoke acknowledgement when account balance is not zero."
            )
        receipt = self.contract.acknowledge_tee_signer(provider, False)
        with self._lock:
            self._acks.pop(provider, None)
        return TxResult.from_receipt(receipt)

    def acknowledge_provider_tee_signer(self, provider: str) -> TxResult:
        """Contract-owner only: ``acknowledgeTEESignerByOwner(provider)``.

        Raises:
            ContractRevertError (e.g. ``OwnableUnauthorizedAccount`` for non-owners), chain errors.
        """
        provider = self._provider(provider)
        fn = self.contract.contract.functions.acknowledgeTEESignerByOwner(provider)
        receipt = self.sender.send(fn)
        with self._lock:
            self._services.pop(provider, None)
        return TxResult.from_receipt(receipt)

    def revoke_provider_tee_signer_acknowledgement(self, provider: str) -> TxResult:
        """Contract-owner only: ``revokeTEESignerAcknowledgement(provider)``."""
        provider = self._provider(provider)
        fn = self.contract.contract.functions.revokeTEESignerAcknowledgement(provider)
        receipt = self.sender.send(fn)
        with self._lock:
            self._services.pop(provider, None)
        return TxResult.from_receipt(receipt)

    # ------------------------------------------------------------------------- headers (§5.4, §6)

    def _session(self, provider: str) -> _Session:
        with self._provider_lock(provider):
            with self._lock:
                session = self._sessions.get(provider)
            if (
                session is not None
                and session.token.expires_at > now_ms() + SESSION_REFRESH_MARGIN_MS
            ):
                return session
            generation, _ = self._account_info_cached(provider)
            token = new_session_token(self.address, provider, generation=generation)
            session = _Session(token, sign_session_token(token, self._account))
            with self._lock:
                self._sessions[provider] = session
            return session

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
        provider = self._provider(provider)
        try:
            ok = self.acknowledged(provider)
        except AccountNotFoundError:
            ok = False
        if not ok:
            raise SignerNotAcknowledgedError(
                f"Provider signer is not acknowledged ({provider}); call "
                "acknowledge_provider_signer first"
            )
        return {"Authorization": authorization_header(self._session(provider).api_key)}

    def invalidate_session(self, provider: str) -> None:
        """Forget the cached ephemeral token and account info of ``provider`` (call it when the
        provider rejects a token, then retry once; see :func:`is_session_rejection`)."""
        provider = self._provider(provider)
        with self._lock:
            self._sessions.pop(provider, None)
            self._account_info.pop(provider, None)

    # ------------------------------------------------------------------------- auto-funding (§7.3-7.4)

    @property
    def funding_checker(self) -> FundingChecker:
        """The broker's :class:`~broker.funding.checker.FundingChecker` (created on first use),
        shared by the scheduler and the inline strategy so cycles are single-flight per provider."""
        with self._lock:
            if self._funding_checker is None:
                self._funding_checker = FundingChecker(self)
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
            InvalidAddressError, FundingConfigError. Funding failures are reported in the status
            (``last_error``) and to listeners, never raised.
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
        collateral: Any = None,
        now: Any = None,
        policy: AttestationPolicy | None = None,
    ) -> VerificationReport:
        """SDK ``verifyService``: verify the provider's TEE attestation locally; delegates to
        :func:`broker.inference.verify.verify_service` with this broker as the service lookup (see
        there for arguments, the returned :class:`~broker.attestation.VerificationReport` and the
        errors raised)."""
        from broker.inference.verify import verify_service

        return verify_service(
            self, provider, output_dir, collateral=collateral, now=now, policy=policy
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
        provider = self._provider(provider)
        if token_id is not None and (
            isinstance(token_id, bool)
            or not isinstance(token_id, int)
            or not 0 <= token_id <= MAX_PERSISTENT_TOKEN_ID
        ):
            raise InvalidTokenIdError(f"Invalid tokenId: {token_id}. Must be between 0 and 254")
        account = self._read_account(provider)
        generation = account.generation if account else 0
        bitmap = account.revoked_bitmap if account else 0
        with self._provider_lock(provider):
            if token_id is None:
                taken = self.fee_store.issued_token_ids(self.address, provider, generation)
                token_id = lowest_free_token_id(bitmap, taken)
            elif is_token_revoked(bitmap, token_id):
                raise InvalidTokenIdError(
                    f"TokenId {token_id} is already revoked. Use a different tokenId or call "
                    "revokeAllTokens() to reset."
                )
            token = new_session_token(
                self.address,
                provider,
                generation=generation,
                token_id=token_id,
                duration_ms=duration,
            )
            raw = sign_session_token(token, self._account)
            self.fee_store.record_issued_token(
                self.address, provider, generation, token_id, token.timestamp, token.expires_at
            )
        return ApiKeyInfo(
            token_id=token_id,
            created_at=token.timestamp,
            expires_at=token.expires_at,
            raw_token=raw,
        )

    def revoke_token(self, provider: str, token_id: int) -> TxResult:
        """Revoke one persistent key: ``revokeToken(provider, tokenId)``.

        Raises:
            InvalidTokenIdError: 255 (``Cannot revoke ephemeral token individually…``) or outside
                0–254 (nothing sent). Chain errors.
        """
        provider = self._provider(provider)
        if token_id == EPHEMERAL_TOKEN_ID:
            raise InvalidTokenIdError(
                "Cannot revoke ephemeral token individually. Use revokeAllTokens() instead."
            )
        if isinstance(token_id, bool) or not isinstance(token_id, int) or not 0 <= token_id <= 254:
            raise InvalidTokenIdError(f"Invalid tokenId: {token_id}. Must be between 0 and 254")
        receipt = self.contract.revoke_token(provider, token_id)
        with self._lock:
            self._account_info.pop(provider, None)
        return TxResult.from_receipt(receipt)

    def revoke_all_tokens(self, provider: str) -> TxResult:
        """Revoke every token of this user for ``provider``: ``revokeAllTokens`` bumps the
        generation and clears the bitmap; the cached session token is dropped."""
        provider = self._provider(provider)
        receipt = self.contract.revoke_all_tokens(provider)
        self.invalidate_session(provider)
        return TxResult.from_receipt(receipt)

    # ------------------------------------------------------------------------- responses (§7, §8)

    def process_response_detailed(
        self,
        provider: str,
        chat_id: str | None = None,
        content: str | bytes | Mapping[str, Any] | None = None,
        *,
        model: str | None = None,
    ) -> VerificationResult:
        """Account the fee of ``content`` and verify the response signature of ``chat_id``.

        Args:
            provider: provider address.
            chat_id: from :mod:`broker.inference.chat_id`; ``None`` skips verification.
            content: what the fee extractor of the service type reads (chatbot: the ``usage`` JSON
                or the whole completion body; images: the request JSON with ``n``; speech: usage).
                The fee (neuron, on-chain prices) is added to the fee store.
            model: ``model`` query of the signature fetch (default: the on-chain default model).

        Right after a stream the provider may not have stored the signature yet: its "chat id not
        found" answer (B7) is retried up to 3 fetches within about 1.5 s
        (:data:`~broker.inference.response_signature.SIGNATURE_NOT_FOUND_ATTEMPTS`); other failures
        are not retried.

        Returns:
            :class:`~broker.inference.response_signature.VerificationResult`; results with a chat
            ID are also recorded in the fee store. Never raises for HTTP or signature problems or an
            unknown service type (those give ``verified=False`` or a logged, skipped fee).

        Raises:
            InvalidAddressError, UnknownProviderError, RPCError.
        """
        provider = self._provider(provider)
        service, cached = self._cached_service(provider)
        if content:
            try:
                fee = fee_for_content(
                    service.service_type, content, service.input_price, service.output_price
                )
            except (UnknownServiceTypeError, UsageError) as exc:
                logger.warning("fee not recorded for %s: %s", provider, exc)
            else:
                self.fee_store.add_fee(self.address, provider, fee)
        result = verify_response_signature(service, chat_id, client=self._http, model=model)
        if result.verified is False and cached and result.reason in _SIGNATURE_RETRY_REASONS:
            service = self._fetch_service(provider)
            result = verify_response_signature(service, chat_id, client=self._http, model=model)
        if chat_id:
            self.fee_store.record_verification(self.address, provider, result)
        if result.verified is False:
            logger.warning(
                "response %s from %s not verified: %s",
                chat_id,
                provider,
                result.detail or result.reason.value,
            )
        return result

    def process_response(
        self,
        provider: str,
        chat_id: str | None = None,
        content: str | bytes | Mapping[str, Any] | None = None,
    ) -> bool | None:
        """SDK ``processResponse``: ``None`` without a chat ID, else whether the TEE signature
        verified. See :meth:`process_response_detailed`."""
        return self.process_response_detailed(provider, chat_id, content).verified


def _register() -> None:
    """Make :func:`broker.broker.create_broker` fill ``broker.inference`` with an InferenceBroker."""
    from broker.broker import register_inference_factory

    register_inference_factory(InferenceBroker.from_broker)


_register()
