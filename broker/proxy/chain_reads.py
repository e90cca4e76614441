"""Chain reads made for a request, with a deadline (issue #9 §4: ``/v1/account`` and ``/metrics``
blocked 152 s when the node hung: web3's 30 s timeout × 5 retries).

Each named read runs in its own daemon thread (a hung read never holds up the process's exit); the
caller waits at most ``timeout`` seconds for all of
them together and gets, per read, the value or a one-line reason. A read still running when its
deadline passes is not started again: the next request waits on the same one (so a hung node costs
at most one thread per read, not one per request).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from broker._exceptions import BrokerError

__all__ = ["ChainReads", "ReadResult"]


@dataclass(frozen=True)
class ReadResult:
    """The outcome of one read: ``ok`` and ``value``, or ``ok=False`` and ``error`` (one line)."""

    ok: bool
    value: Any = None
    error: str | None = None


class ChainReads:
    """Runs named blocking chain reads with a shared deadline (at most one running per name)."""

    def __init__(self) -> None:
        self._inflight: dict[str, Future] = {}
        self._lock = threading.Lock()

    def run(self, reads: dict[str, Callable[[], Any]], timeout: float) -> dict[str, ReadResult]:
        """Run every read (concurrently) and wait at most ``timeout`` seconds in all.

        Args:
            reads: name → zero-argument blocking function.
            timeout: seconds to wait for all of them together.

        Returns:
            name → :class:`ReadResult`; a read that did not finish in time has
            ``error = "chain node did not answer within <timeout> s"``; one that raised a
            :class:`~broker.BrokerError` has its message.
        """
        futures: dict[str, Future] = {}
        with self._lock:
            for name, fn in reads.items():
                fut = self._inflight.get(name)
                if fut is None or fut.done():
                    fut = self._start(name, fn)
                    self._inflight[name] = fut
                futures[name] = fut
        deadline = time.monotonic() + timeout
        out: dict[str, ReadResult] = {}
        for name, fut in futures.items():
            try:
                value = fut.result(timeout=max(0.0, deadline - time.monotonic()))
            except FutureTimeout:
                out[name] = ReadResult(
                    False, error=f"chain node did not answer within {timeout:g} s"
                )
            except BrokerError as exc:
                out[name] = ReadResult(
                    False, error=str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                )
            except Exception as exc:  # noqa: BLE001 - reported, never raised into the handler
                out[name] = ReadResult(False, error=f"chain read failed ({type(exc).__name__})")
            else:
                out[name] = ReadResult(True, value=value)
        return out

    @staticmethod
    def _start(name: str, fn: Callable[[], Any]) -> Future:
        fut: Future = Future()

        def work() -> None:
            if not fut.set_running_or_notify_cancel():
                return
            try:
                fut.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting request
                fut.set_exception(exc)

        threading.Thread(target=work, name=f"chain-read-{name}", daemon=True).start()
        return fut
