"""Background auto-funding: one APScheduler interval job per provider (user-broker.md §7.4, with
the fixes of §13 item 2).

* ``max_instances=1`` and ``coalesce=True``: a slow cycle (a transaction can take minutes) never
  overlaps the next tick; missed ticks collapse into one. Cycles are single-flight per provider in
  :class:`~broker.funding.checker.FundingChecker` as well, so an inline check and a scheduled one
  never transfer twice.
* The scheduler thread is a daemon; when the last job is stopped (or
  :meth:`FundingScheduler.shutdown` is called) the scheduler is shut down with ``wait=False``, so no
  thread keeps the process alive.
* ``interval`` is in **seconds** (the SDK's option is milliseconds).
"""

from __future__ import annotations

import logging
import threading
from decimal import Decimal

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler

from broker.chain.addresses import checksum_address
from broker.funding.checker import FundingChecker
from broker.funding.errors import FundingConfigError
from broker.funding.policy import DEFAULT_BUFFER_MULTIPLIER, BufferMultiplier, buffer_amount
from broker.funding.status import FundingStatus

__all__ = ["DEFAULT_INTERVAL_S", "THREAD_NAME_PREFIX", "FundingScheduler", "validate_interval"]

logger = logging.getLogger(__name__)

#: the SDK's default interval (30 000 ms), in seconds.
DEFAULT_INTERVAL_S = 30.0
#: name prefix of the worker threads running cycles.
THREAD_NAME_PREFIX = "zg-funding"


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
    """

    def __init__(self, checker: FundingChecker, *, max_workers: int = 4) -> None:
        self.checker = checker
        self.max_workers = max_workers
        self._lock = threading.RLock()
        self._scheduler: BackgroundScheduler | None = None
        self._jobs: dict[str, str] = {}

    def __repr__(self) -> str:
        return f"FundingScheduler(providers={sorted(self._jobs)})"

    def _ensure_scheduler(self) -> BackgroundScheduler:
        if self._scheduler is None:
            scheduler = BackgroundScheduler(
                daemon=True,
                executors={"default": ThreadPoolExecutor(
                    self.max_workers, pool_kwargs={"thread_name_prefix": THREAD_NAME_PREFIX})},
                job_defaults={"max_instances": 1, "coalesce": True},
                timezone="UTC",
            )  # fmt: skip
            scheduler.start()
            self._scheduler = scheduler
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
            InvalidAddressError, FundingConfigError.
        """
        provider = checksum_address(provider, field="provider")
        seconds = validate_interval(interval)
        buffer_amount(buffer_multiplier)
        self.stop(provider)
        if run_immediately:
            self.checker.check(provider, buffer_multiplier)
        with self._lock:
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

    def stop(self, provider: str | None = None) -> None:
        """Stop auto-funding of ``provider`` (``None``: of every provider). When no job is left the
        scheduler is shut down without waiting (a running cycle finishes in its worker thread).

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
        scheduler, self._scheduler = self._scheduler, None
        if scheduler is not None and scheduler.running:
            scheduler.shutdown(wait=False)

    def is_running(self, provider: str) -> bool:
        """Whether a job is registered for ``provider``."""
        with self._lock:
            return checksum_address(provider, field="provider") in self._jobs

    def providers(self) -> list[str]:
        """Checksummed addresses with a running job."""
        with self._lock:
            return sorted(self._jobs)

    def shutdown(self) -> None:
        """Stop every job and the scheduler (same as ``stop(None)``)."""
        self.stop(None)
