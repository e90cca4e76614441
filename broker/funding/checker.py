"""The check-and-fund cycle (user-broker.md §7.3), single-flight per provider (§13 items 1–2).

One :class:`FundingChecker` per :class:`~broker.inference.broker.InferenceBroker` is shared by the
background scheduler (:mod:`broker.funding.scheduler`) and the inline per-request strategy
(:mod:`broker.funding.inline`), so at most one cycle runs per provider at any time, whoever starts
it.

A cycle:

1. asks the provider ``GET {url}/v1/user/{address}/unsettledfee`` with the session header; on
   network errors, 408/429 and 5xx it retries (bounded, exponential backoff); when it still fails
   (or the provider has no such endpoint, or no header can be made because the user has not
   acknowledged) it falls back to the cached fee of the fee store, like the SDK. A successful answer
   overwrites the cached fee;
2. reads the sub-account (retrying RPC failures); ``locked = balance − pendingRefund``;
3. decides with :func:`broker.funding.policy.decide`;
4. transfers ``max(deficit, 1 0G)`` with ``ledger.transfer_fund`` (never retried blindly inside a
   cycle: the next cycle re-reads the chain first) and resets the cached fee to 0 on success.

Cycles never raise; every decision is logged on one line and reported to listeners as a
:class:`~broker.funding.status.FundingEvent`; :meth:`FundingChecker.status` gives the
:class:`~broker.funding.status.FundingStatus`.

:meth:`FundingChecker.close` ends it all: no cycle starts after it, a cycle in flight stops at its
next step (no further read or retry, no transfer started; a transfer already sent is waited for),
and ``close`` returns once no cycle runs, so nothing polls a provider or a chain that may be gone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from broker._exceptions import BrokerError, RPCError
from broker.chain.addresses import checksum_address
from broker.funding.errors import FundingClosedError, FundingConfigError, UnsettledFeeError
from broker.funding.policy import (
    DEFAULT_BUFFER_MULTIPLIER,
    BufferMultiplier,
    FundingDecision,
    buffer_amount,
    decide,
)
from broker.funding.status import FundingEvent, FundingEventKind, FundingStatus
from broker.funding.unsettled import DEFAULT_UNSETTLED_TIMEOUT_S, fetch_unsettled_fee
from broker.units import Neuron, format_0g

if TYPE_CHECKING:
    from broker.funding.source import FundingSource

__all__ = ["FundingChecker", "FundingListener", "RetryPolicy"]

logger = logging.getLogger(__name__)

FundingListener = Callable[[FundingEvent], None]
T = TypeVar("T")

_RETRY_STATUS = frozenset({408, 429})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Bounded retries for the reads of a cycle (``/unsettledfee``, ``getService``, ``getAccount``).

    Attributes:
        attempts: tries in all (≥ 1).
        backoff_s: seconds before the 2nd try; doubled each time.
        max_backoff_s: cap of one wait, seconds.
    """

    attempts: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 5.0

    def __post_init__(self) -> None:
        if (
            isinstance(self.attempts, bool)
            or not isinstance(self.attempts, int)
            or self.attempts < 1
        ):
            raise FundingConfigError(f"retry attempts must be an int ≥ 1, got {self.attempts!r}")
        if self.backoff_s < 0 or self.max_backoff_s < 0:
            raise FundingConfigError("retry backoff must not be negative")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed try number ``attempt`` (1-based)."""
        return min(self.backoff_s * 2 ** (attempt - 1), self.max_backoff_s)


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, UnsettledFeeError):
        code = exc.status_code
        return code is None or code >= 500 or code in _RETRY_STATUS
    return isinstance(exc, RPCError)


@dataclass
class _State:
    provider: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    last_done: float | None = None  # monotonic seconds of the last completed cycle
    values: dict[str, Any] = field(default_factory=dict)


class FundingChecker:
    """Runs check-and-fund cycles for one inference broker.

    Args:
        broker: a :class:`~broker.funding.source.FundingSource` (an
            :class:`~broker.inference.broker.InferenceBroker`: its address, session headers,
            services, sub-accounts, ledger and fee store are used).
        retry: :class:`RetryPolicy` for reads.
        http_client: ``httpx.Client`` for ``/unsettledfee`` (default: one owned by the checker).
        timeout: seconds per ``/unsettledfee`` request.
        sleep: ``(seconds) -> None`` used between retries (default: a wait that :meth:`close`
            cuts short).
    """

    def __init__(
        self,
        broker: FundingSource,
        *,
        retry: RetryPolicy | None = None,
        http_client: httpx.Client | None = None,
        timeout: float = DEFAULT_UNSETTLED_TIMEOUT_S,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        self.broker = broker
        self.retry = retry or RetryPolicy()
        self._own_http = http_client is None
        self._http = http_client or httpx.Client(timeout=timeout)
        self._timeout = timeout
        self._sleep = sleep
        self._lock = threading.Lock()
        self._states: dict[str, _State] = {}
        self._listeners: list[FundingListener] = []
        self._closed = threading.Event()
        self._idle = threading.Condition(self._lock)  # notified when a cycle ends
        self._cycling: list[int] = []  # idents of the threads running a cycle now

    def __repr__(self) -> str:
        return f"FundingChecker(user={self.broker.address}, providers={len(self._states)})"

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed.is_set()

    def close(self, timeout: float | None = None) -> bool:
        """Stop for good: no cycle starts after this (:meth:`check` returns the status without
        running one), a cycle in flight stops at its next step (no further read or retry, its
        retry wait cut short, no transfer started: it is neither counted nor reported), then the
        owned HTTP client is closed. Idempotent.

        Waits for the cycles in flight in other threads: each stops after the call it is in (an
        RPC or ``/unsettledfee`` request, bounded by their timeouts, or a transfer already sent,
        which is never abandoned half-way).

        Args:
            timeout: seconds to wait at most (``None``: until they stopped).

        Returns:
            ``True`` when no cycle of another thread is left running (the HTTP client is then
            closed), ``False`` when ``timeout`` ran out first (the client is left open for the
            cycle still using it).
        """
        me = threading.get_ident()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            self._closed.set()
            while others := [t for t in self._cycling if t != me]:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    logger.warning(
                        "auto-funding: %d cycle(s) still running after %.1f s; closing without "
                        "them",
                        len(others),
                        timeout,
                    )
                    return False
                self._idle.wait(left)
        if self._own_http:
            self._http.close()
        return True

    def _begin_cycle(self) -> bool:
        """Register the calling thread as running a cycle, unless closed (then ``False``)."""
        with self._lock:
            if self._closed.is_set():
                return False
            self._cycling.append(threading.get_ident())
            return True

    def _end_cycle(self) -> None:
        with self._idle:
            self._cycling.remove(threading.get_ident())
            self._idle.notify_all()

    def _stop_if_closed(self) -> None:
        if self._closed.is_set():
            raise FundingClosedError("auto-funding was closed")

    def _wait(self, seconds: float) -> None:
        """Sleep between retries; :meth:`close` cuts the default wait short."""
        if self._sleep is None:
            self._closed.wait(seconds)
        else:
            self._sleep(seconds)
        self._stop_if_closed()

    # ------------------------------------------------------------------ listeners and status

    def add_listener(self, callback: FundingListener) -> Callable[[], None]:
        """Call ``callback(event)`` for every :class:`FundingEvent` (from the thread running the
        cycle; exceptions are logged and ignored). Returns a function that removes it."""
        with self._lock:
            self._listeners.append(callback)

        def remove() -> None:
            with self._lock:
                if callback in self._listeners:
                    self._listeners.remove(callback)

        return remove

    def _state(self, provider: str) -> _State:
        with self._lock:
            state = self._states.get(provider)
            if state is None:
                state = self._states[provider] = _State(provider)
            return state

    def status(self, provider: str) -> FundingStatus:
        """The :class:`FundingStatus` of ``provider`` (all defaults before any check).

        Raises:
            InvalidAddressError: malformed address.
        """
        provider = checksum_address(provider, field="provider")
        state = self._state(provider)
        with self._lock:
            values = dict(state.values)
        return FundingStatus(provider=provider, **values)

    def is_running(self, provider: str) -> bool:
        """Whether a background job is registered for ``provider`` (checksummed address)."""
        with self._lock:
            state = self._states.get(provider)
            return bool(state and state.values.get("running"))

    def set_running(
        self,
        provider: str,
        running: bool,
        *,
        interval: float | None = None,
        buffer_multiplier: BufferMultiplier | None = None,
    ) -> None:
        """Record whether a background job runs for ``provider`` (used by the scheduler)."""
        state = self._state(provider)
        with self._lock:
            state.values["running"] = running
            state.values["interval"] = interval if running else None
            if buffer_multiplier is not None:
                state.values["buffer_multiplier"] = str(buffer_multiplier)

    def _update(self, state: _State, **values: Any) -> None:
        with self._lock:
            state.values.update(values)

    def _emit(self, kind: FundingEventKind, provider: str, detail: str, amount: int = 0) -> None:
        event = FundingEvent(
            kind=kind, provider=provider, amount=amount, at=datetime.now(UTC), detail=detail
        )
        with self._lock:
            listeners = list(self._listeners)
        for callback in listeners:
            try:
                callback(event)
            except Exception:  # a dashboard must not break funding
                logger.exception("auto-funding listener %r failed", callback)

    # ------------------------------------------------------------------ the cycle

    def check(
        self,
        provider: str,
        buffer_multiplier: BufferMultiplier = DEFAULT_BUFFER_MULTIPLIER,
        *,
        create_sub_account: bool = True,
    ) -> FundingStatus:
        """Run one check-and-fund cycle for ``provider``, single-flight: when a cycle for this
        provider is already running, wait for it and return its result instead of starting another.

        Args:
            provider: provider address.
            buffer_multiplier: 0G kept above the unsettled fee (int, ``Decimal`` or decimal string).
            create_sub_account: when the sub-account does not exist, create it with the required
                amount (the SDK's behaviour); ``False`` skips the transfer instead.

        Returns:
            the :class:`FundingStatus` after the cycle (after :meth:`close`: the status as it is;
            no cycle runs).

        Raises:
            InvalidAddressError, FundingConfigError (bad arguments). Funding failures never raise.
        """
        provider = checksum_address(provider, field="provider")
        buffer_amount(buffer_multiplier)  # validate before taking the lock
        state = self._state(provider)
        if state.lock.acquire(blocking=False):
            try:
                if self._begin_cycle():
                    try:
                        self._cycle(state, buffer_multiplier, create_sub_account)
                    finally:
                        self._end_cycle()
                        state.last_done = time.monotonic()
            finally:
                state.lock.release()
        else:
            with state.lock:  # another thread's cycle was in flight: its result is ours
                pass
        return self.status(provider)

    def check_if_stale(
        self,
        provider: str,
        max_age_s: float,
        buffer_multiplier: BufferMultiplier = DEFAULT_BUFFER_MULTIPLIER,
        *,
        create_sub_account: bool = False,
    ) -> FundingStatus | None:
        """Like :meth:`check`, but do nothing (return ``None``) when a cycle for ``provider``
        completed less than ``max_age_s`` seconds ago (the inline rate limit)."""
        provider = checksum_address(provider, field="provider")
        state = self._state(provider)
        last = state.last_done
        if last is not None and time.monotonic() - last < max_age_s:
            return None
        return self.check(provider, buffer_multiplier, create_sub_account=create_sub_account)

    def _with_retries(self, what: str, fn: Callable[[], T]) -> T:
        attempt = 1
        while True:
            self._stop_if_closed()
            try:
                return fn()
            except BrokerError as exc:
                if not _retryable(exc) or attempt >= self.retry.attempts:
                    raise
                delay = self.retry.delay(attempt)
                logger.info(
                    "auto-funding: %s failed (%s); retry %d/%d in %.2f s",
                    what, exc, attempt, self.retry.attempts - 1, delay,
                )  # fmt: skip
                self._wait(delay)
                attempt += 1

    def _unsettled_fee(self, provider: str) -> tuple[int, str, str | None]:
        """(fee, source, error text or None)."""
        broker = self.broker
        try:
            headers = broker.session_headers(provider)
        except broker.no_session_errors as exc:
            logger.debug(
                "auto-funding %s: no session header (%s); using the cached fee", provider, exc
            )
            return broker.fee_store.get_cached_fee(broker.address, provider), "cached", None
        try:
            service = self._with_retries(
                f"getService({provider})", lambda: broker.get_service(provider)
            )
            fee = self._with_retries(
                "GET /unsettledfee",
                lambda: fetch_unsettled_fee(
                    self._http, service.url, broker.address, headers, timeout=self._timeout
                ),
            )
        except UnsettledFeeError as exc:
            cached = broker.fee_store.get_cached_fee(broker.address, provider)
            # a provider without the endpoint (404) is normal (the SDK's fallback); the rest is not
            error = None if exc.status_code == 404 else f"unsettled fee unavailable: {exc}"
            logger.warning(
                "auto-funding %s: %s; using the cached fee %s 0G", provider, exc, format_0g(cached)
            )
            return cached, "cached", error
        broker.fee_store.set_cached_fee(broker.address, provider, fee)
        return fee, "provider", None

    def _read_locked(self, provider: str) -> int | None:
        def read() -> int | None:
            try:
                account = self.broker.get_account(provider)
            except self.broker.missing_account_errors:
                return None
            return account.balance - account.pending_refund

        return self._with_retries(f"getAccount({provider})", read)

    def _cycle(self, state: _State, buffer_multiplier: BufferMultiplier, create: bool) -> None:
        provider = state.provider
        now = datetime.now(UTC)
        error: str | None = None
        try:
            fee, source, error = self._unsettled_fee(provider)
            if error:
                self._emit("error", provider, error)
            locked = self._read_locked(provider)
            decision = decide(locked, fee, buffer_multiplier)
            self._update(
                state,
                unsettled_fee=fee,
                unsettled_fee_source=source,
                locked_balance=locked,
                buffer_multiplier=str(buffer_multiplier),
            )
            transfer_error = self._act(state, decision, create)
            error = transfer_error or error
        except FundingClosedError:  # close() was called during the cycle: stop, count nothing
            logger.info("auto-funding %s: cycle stopped, auto-funding was closed", provider)
            return
        except BrokerError as exc:
            error = f"check-and-fund failed: {exc}"
            logger.warning("auto-funding %s: %s", provider, error)
            self._emit("error", provider, error)
        except Exception as exc:  # never let a cycle kill the scheduler thread
            error = f"check-and-fund failed: {type(exc).__name__}: {exc}"
            logger.exception("auto-funding %s: unexpected failure", provider)
            self._emit("error", provider, error)
        with self._lock:
            state.values["checks"] = state.values.get("checks", 0) + 1
            state.values["last_check_at"] = now
            state.values["last_error"] = error

    def _act(self, state: _State, decision: FundingDecision, create: bool) -> str | None:
        """Log the decision, transfer if needed; returns an error text or None."""
        provider = state.provider
        locked_text = (
            "no sub-account"
            if decision.locked_balance is None
            else (f"locked {format_0g(decision.locked_balance)} 0G")
        )
        summary = (
            f"{locked_text}, unsettled fee {format_0g(decision.unsettled_fee)} 0G, "
            f"required {format_0g(decision.required)} 0G"
        )
        if not decision.needs_transfer:
            logger.info("auto-funding %s: %s; funded, no transfer", provider, summary)
            self._emit("check", provider, f"{summary}; funded, no transfer")
            return None
        if decision.locked_balance is None and not create:
            logger.info("auto-funding %s: %s; not creating a sub-account inline", provider, summary)
            self._emit("check", provider, f"{summary}; no sub-account, not created inline")
            return None
        amount = decision.amount
        self._stop_if_closed()  # last point before money moves: a closed checker sends nothing
        logger.info("auto-funding %s: %s; transferring %s 0G", provider, summary, format_0g(amount))
        self._emit("check", provider, f"{summary}; transferring {format_0g(amount)} 0G", amount)
        broker = self.broker
        try:
            tx = broker.ledger.transfer_fund(provider, "inference", Neuron(amount))
        except BrokerError as exc:
            text = str(exc)
            if "insufficient" in text.lower():
                error = (
                    f"transfer of {format_0g(amount)} 0G failed: {text}; deposit more funds "
                    "into the ledger (0g-broker deposit --amount <0G>)"
                )
            else:
                error = f"transfer of {format_0g(amount)} 0G failed: {text}"
            logger.warning("auto-funding %s: %s", provider, error)
            self._emit("error", provider, error, amount)
            return error
        broker.fee_store.set_cached_fee(broker.address, provider, 0)
        locked_after = (decision.locked_balance or 0) + amount
        with self._lock:
            state.values["transfers"] = state.values.get("transfers", 0) + 1
            state.values["last_transfer_at"] = datetime.now(UTC)
            state.values["last_transfer_amount"] = amount
            state.values["locked_balance"] = locked_after
        detail = f"transferred {format_0g(amount)} 0G (tx {tx.tx_hash})"
        logger.info("auto-funding %s: %s", provider, detail)
        self._emit("transfer", provider, detail, amount)
        return None
