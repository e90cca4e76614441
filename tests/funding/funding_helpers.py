"""Helpers of the auto-funding tests (imported by name; the tests folder is on sys.path)."""

from __future__ import annotations

import threading
import time

OG = 10**18


def locked(inf, provider: str) -> int:
    """balance − pendingRefund of the sub-account, read from the chain."""
    account = inf.get_account(provider)
    return account.balance - account.pending_refund


def funding_threads() -> list[threading.Thread]:
    """Live scheduler / worker threads of auto-funding (named ``zg-funding-<n>`` /
    ``zg-funding-<n>_<i>``; the gateway's settlement scheduler, ``APScheduler``, is not one)."""
    from broker.funding.scheduler import THREAD_NAME_PREFIX

    return [t for t in threading.enumerate() if t.name.startswith(THREAD_NAME_PREFIX)]


def wait_for(predicate, timeout: float, step: float = 0.05) -> bool:
    """Poll ``predicate()`` until true or ``timeout`` seconds passed."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())
