"""Background auto-funding: one APScheduler interval job per provider (user-broker.md §7.4, with
the fixes of §13 item 2).

* ``max_instances=1`` and ``coalesce=True``: a slow cycle (a transaction can take minutes) never
  overlaps the next tick; missed ticks collapse into one. Cycles are single-flight per provider in
  :class:`~broker.funding.checker.FundingChecker` as well, so an inline check and a scheduled one
  never transfer twice.
* The scheduler runs in a daemon thread named :attr:`FundingScheduler.thread_name`
  (``zg-funding-<n>``, one ``n`` per scheduler), its cycles in worker threads named
  ``zg-funding-<n>_<i>``: every auto-funding thread's name starts with :data:`THREAD_NAME_PREFIX`.
* When the last job is stopped the scheduler thread ends at once, without waiting for a cycle in
  flight (it finishes in its worker thread); :meth:`FundingScheduler.shutdown` (called by
  ``InferenceBroker.close`` after closing the checker, which cuts such a cycle short) also waits
  for the worker threads, so none is left once it returns.
* ``interval`` is in **seconds** (the SDK's option is milliseconds).
"""

from __future__ import annotations

import itertools
import logging
import threading
from decimal import Decimal

from apscheduler.events import EVENT_SCHEDULER_STARTED
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.blocking import BlockingScheduler

from broker.chain.addresses import checksum_address
from broker.funding.checker import FundingChecker
from broker.funding.errors import FundingClosedError, FundingConfigError, FundingError
from broker.funding.policy import DEFAULT_BUFFER_MULTIPLIER, BufferMultiplier, buffer_amount
from broker.funding.status import FundingStatus

__all__ = ["DEFAULT_INTERVAL_S", "THREAD_NAME_PREFIX", "FundingScheduler", "validate_interval"]

logger = logging.getLogger(__name__)

#: the SDK's default interval (30 000 ms), in seconds.
DEFAULT_INTERVAL_S = 30.0
#: name prefix of every auto-funding thread (scheduler threads and the workers running cycles).
THREAD_NAME_PREFIX = "zg-funding"
#: seconds to wait for a new scheduler thread to be running.
_START_TIMEOUT_S = 10.0
_serials = itertools.count(1)


def validate_interval(interval: float | Decimal) -> float:
    """Check an interval in seconds (> 0, finite, not a bool) and return it as float.

    Raises:
        FundingConfigError: anything else.
    """
    if isinstance(interval, bool) or not isinstance(interval, (int, float, Decimal)):
        raise FundingConfigError(f"interval must be a number of seconds, got {interval!r}")
    value = float(interval)
    if not value > 0 or value == float("inf"):
        raise FundingConfigError(f"interval must be a positive number of seconds, got {interval!r}")
    return value


class FundingScheduler:
    """Runs :meth:`FundingChecker.check` for each started provider every ``interval`` seconds.

    Args:
        checker: the broker's :class:`~broker.funding.checker.FundingChecker`.
        max_workers: threads running cycles of different providers in parallel.

    Attributes:
        thread_name: name of its scheduler thread (``zg-funding-<n>``), and prefix of its worker
            threads' names (``zg-funding-<n>_<i>``).
    """

    def __init__(self, checker: FundingChecker, *, max_workers: int = 4) -> None:
        self.checker = checker
        self.max_workers = max_workers
        self.thread_name = f"{THREAD_NAME_PREFIX}-{next(_serials)}"
        self._lock = threading.RLock()
        self._scheduler: BlockingScheduler | None = None
        self._thread: threading.Thread | None = None
        # worker threads of stopped schedulers (their pools shut down) that may still run a cycle
        self._draining: list[threading.Thread] = []
        self._jobs: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"FundingScheduler(providers={sorted(self._jobs)})"

    def _ensure_scheduler(self) -> BlockingScheduler:
        """The running scheduler (started in the daemon thread :attr:`thread_name` when none
        runs). Caller holds ``self._lock``."""
        if self._scheduler is None:
            executor = ThreadPoolExecutor(
                self.max_workers, pool_kwargs={"thread_name_prefix": self.thread_name}
            )
            scheduler = BlockingScheduler(
                executors={"default": executor},
                job_defaults={"max_instances": 1, "coalesce": True},
                timezone="UTC",
            )
            started = threading.Event()
            scheduler.add_listener(lambda _event: started.set(), EVENT_SCHEDULER_STARTED)
            thread = threading.Thread(target=scheduler.start, name=self.thread_name, daemon=True)
            thread.start()
            if not started.wait(_START_TIMEOUT_S):  # pragma: no cover - start() cannot block
                raise FundingError("the auto-funding scheduler did not start")
            self._scheduler, self._thread = scheduler, thread
        return self._scheduler

    def start(
        self,
        provider: str,
        interval: float | Decimal = DEFAULT_INTERVAL_S,
        buffer_multiplier: BufferMultiplier = DEFAULT_BUFFER_MULTIPLIER,
        *,
        run_immediately: bool = True,
    ) -> FundingStatus:
        """Start (or restart with new settings) auto-funding of ``provider``.

        Like the SDK, one cycle runs immediately (in the calling thread; it never raises for funding
        failures), then every ``interval`` seconds in the background.

        Args:
            provider: provider address.
            interval: seconds between cycles (> 0).
            buffer_multiplier: 0G kept above the unsettled fee.
            run_immediately: run the first cycle now (default) instead of after one interval.

        Returns:
            the provider's :class:`FundingStatus` (``running=True``).

        Raises:
            InvalidAddressError, FundingConfigError. FundingClosedError: the checker was closed
            (before the call or during its first cycle); no job is started.
        """
        provider = checksum_address(provider, field="provider")
        seconds = validate_interval(interval)
        buffer_amount(buffer_multiplier)
        self.stop(provider)
        self._refuse_if_closed()
        if run_immediately:
            self.checker.check(provider, buffer_multiplier)
        with self._lock:
            # checked under the lock that stop() takes: a close() racing this start either sees
            # the job below and removes it, or makes this start refuse
            self._refuse_if_closed()
            scheduler = self._ensure_scheduler()
            job = scheduler.add_job(
                self.checker.check, "interval", seconds=seconds,
                args=[provider, buffer_multiplier], id=f"auto-funding:{provider}",
                name=f"auto-funding {provider}", replace_existing=True,
                misfire_grace_time=max(1, int(seconds)),
            )  # fmt: skip
            self._jobs[provider] = job.id
            self.checker.set_running(
                provider, True, interval=seconds, buffer_multiplier=buffer_multiplier
            )
        logger.info(
            "auto-funding %s: started (every %s s, buffer %s 0G)",
            provider,
            seconds,
            buffer_multiplier,
        )
        return self.checker.status(provider)

    def _refuse_if_closed(self) -> None:
        if self.checker.closed:
            raise FundingClosedError(
                "auto-funding was closed (the broker was closed); create a new broker to fund again"
            )

    def stop(self, provider: str | None = None) -> None:
        """Stop auto-funding of ``provider`` (``None``: of every provider). When no job is left the
        scheduler thread ends without waiting for a cycle in flight (it finishes in its worker
        thread; :meth:`shutdown` waits for it).

        Raises:
            InvalidAddressError: malformed address.
        """
        with self._lock:
            if provider is None:
                providers = list(self._jobs)
            else:
                providers = [checksum_address(provider, field="provider")]
            for p in providers:
                job_id = self._jobs.pop(p, None)
                if job_id is None:
                    continue
                if self._scheduler is not None:
                    try:
                        self._scheduler.remove_job(job_id)
                    except JobLookupError:
                        logger.debug("auto-funding job %s was already gone", job_id)
                self.checker.set_running(p, False)
                logger.info("auto-funding %s: stopped", p)
            if not self._jobs:
                self._shutdown_scheduler()

    def _shutdown_scheduler(self) -> None:
        """Stop the scheduler thread (joined: it only waits for the next run time); its worker
        pool is shut down without waiting, its live workers noted for :meth:`shutdown`. Caller
        holds the lock."""
        scheduler, self._scheduler = self._scheduler, None
        thread, self._thread = self._thread, None
        if scheduler is not None and scheduler.running:
            scheduler.shutdown(wait=False)  # its pool takes no job any more: no new worker
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        # every live worker of this scheduler's pools (all shut down now; the names are reused)
        prefix = self.thread_name + "_"
        self._draining = [t for t in threading.enumerate() if t.name.startswith(prefix)]

    def is_running(self, provider: str) -> bool:
        """Whether a job is registered for ``provider``."""
        with self._lock:
            return checksum_address(provider, field="provider") in self._jobs

    def providers(self) -> list[str]:
        """Checksummed addresses with a running job."""
        with self._lock:
            return sorted(self._jobs)

    def shutdown(self, *, wait: bool = True) -> None:
        """Stop every job and the scheduler; with ``wait`` (default), also wait until no worker
        thread is left, i.e. until the cycles in flight ended (close the checker first to cut them
        short: :meth:`~broker.inference.broker.InferenceBroker.close` does). From one of its own
        worker threads (a listener) it does not wait for itself."""
        self.stop(None)
        if not wait:
            return
        me = threading.current_thread()
        with self._lock:
            draining, self._draining = self._draining, []
        for worker in draining:
            if worker is not me:  # from a listener in one of them: not waiting for itself
                worker.join()  # its pool is shut down: it ends after its cycle
