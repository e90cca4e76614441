"""Per-user outstanding fees kept in memory (the B4.5 gate reads them on every billed request).

The sum of a user's ``pending``, ``unsettled`` and ``settling`` fees is linear in the user's rows
when summed in the database; :class:`OutstandingFees` keeps it per user instead: loaded from the
database the first time a user is asked for (and again after :attr:`OutstandingFees.ttl` seconds,
which bounds any drift), then moved by this process's own writes — a bill adds its fee once
committed (:meth:`~OutstandingFees.begin` / :meth:`~OutstandingFees.end`), a settlement that pays
or releases rows drops the user (:meth:`~OutstandingFees.forget`, reloaded on next use).

A load that overlaps a write of the same user is answered but not kept (a write in flight might
be counted twice or not at all), so a kept total always equals the database's sum of the rows
this process committed. Writes by another process on the same database are seen after at most
``ttl`` seconds: the gateway uses this only for SQLite, whose file one gateway process owns
(PostgreSQL deployments sum in the database on every request).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

__all__ = ["OUTSTANDING_TTL", "OutstandingFees"]

#: Seconds a loaded total is used before it is summed from the database again.
OUTSTANDING_TTL = 60.0


class OutstandingFees:
    """Outstanding fees (neuron) per lower-cased user address; thread-safe.

    Args:
        ttl: seconds a total loaded from the database is kept (default :data:`OUTSTANDING_TTL`).
    """

    def __init__(self, ttl: float = OUTSTANDING_TTL) -> None:
        self.ttl = ttl
        self._lock = threading.Lock()
        self._totals: dict[str, tuple[int, float]] = {}  # user -> (neuron, loaded at, monotonic)
        self._epoch: dict[str, int] = {}  # user -> writes begun or ended (a load checks it)
        self._in_flight: dict[str, int] = {}  # user -> writes begun, not yet ended
        self._all = 0  # forget() of everyone

    def get(self, user: str, load: Callable[[str], int]) -> int:
        """The user's outstanding fees in neuron; ``load(user)`` sums them in the database when
        they are not kept (or older than ``ttl``). Exceptions of ``load`` propagate."""
        key = user.lower()
        with self._lock:
            hit = self._totals.get(key)
            if hit is not None and time.monotonic() - hit[1] < self.ttl:
                return hit[0]
            epoch = (self._epoch.get(key, 0), self._all)
        stamp = time.monotonic()
        value = load(user)
        with self._lock:
            if (self._epoch.get(key, 0), self._all) == epoch and not self._in_flight.get(key):
                self._totals[key] = (value, stamp)
        return value

    def peek(self, user: str) -> int | None:
        """The kept total of ``user`` (neuron), or ``None`` when not kept or older than ``ttl``
        (no I/O)."""
        with self._lock:
            hit = self._totals.get(user.lower())
        if hit is None or time.monotonic() - hit[1] >= self.ttl:
            return None
        return hit[0]

    def begin(self, user: str) -> None:
        """A write that may change ``user``'s outstanding fees is about to be committed."""
        key = user.lower()
        with self._lock:
            self._epoch[key] = self._epoch.get(key, 0) + 1
            self._in_flight[key] = self._in_flight.get(key, 0) + 1

    def end(self, user: str, delta: int | None) -> None:
        """The write :meth:`begin` announced is over: committed, changing the outstanding fees by
        ``delta`` neuron, or not known to be (``None``: the user is dropped and loaded again)."""
        key = user.lower()
        with self._lock:
            self._epoch[key] = self._epoch.get(key, 0) + 1
            left = self._in_flight.get(key, 0) - 1
            if left > 0:
                self._in_flight[key] = left
            else:
                self._in_flight.pop(key, None)
            hit = self._totals.get(key)
            if delta is None:
                self._totals.pop(key, None)
            elif hit is not None and delta:
                self._totals[key] = (hit[0] + delta, hit[1])

    def forget(self, user: str | None = None) -> None:
        """Drop ``user``'s total (or everyone's); the next :meth:`get` loads it again. Call it
        after committing any other change of outstanding rows (settlement)."""
        with self._lock:
            if user is None:
                self._all += 1
                self._totals.clear()
                return
            key = user.lower()
            self._epoch[key] = self._epoch.get(key, 0) + 1
            self._totals.pop(key, None)
