"""The shared, in-memory state of one :class:`~broker.inference.broker.InferenceBroker`
(user-broker.md §12 caching, §13 item 19).

One :class:`BrokerState` is created by the broker and passed explicitly to each of its processors
(:mod:`~broker.inference.services`, :mod:`~broker.inference.accounts`,
:mod:`~broker.inference.sessions`, :mod:`~broker.inference.responses`); it is the only owner of the
caches and of the lock that guards them. Every cache is keyed by the checksummed provider address
and holds its expiry as a ``clock()`` time (Unix seconds).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from broker.inference.models import Service
from broker.inference.token import SessionToken

__all__ = ["BrokerState", "CachedSession"]


@dataclass
class CachedSession:
    """An ephemeral session token and its signed ``app-sk-…`` form (a secret: never logged)."""

    token: SessionToken
    api_key: str


@dataclass(eq=False)
class BrokerState:
    """Locks and caches shared by the processors of one broker.

    Attributes:
        clock: ``() -> Unix seconds`` (float), for cache expiries and refund lock times.
        lock: the re-entrant lock guarding every cache below (and the broker's lazily created
            parts).
        provider_locks: one lock per provider (single-flight token creation, API key issuing).
        services: ``provider -> (Service, expiry)`` (``getService`` / ``getAllServices``).
        acks: ``provider -> expiry`` of a positive user acknowledgement.
        account_info: ``provider -> (generation, revoked_bitmap, expiry)`` from ``getAccount``.
        sessions: ``provider -> CachedSession`` (the ephemeral token, id 255).
    """

    clock: Callable[[], float] = time.time
    lock: threading.RLock = field(default_factory=threading.RLock)
    provider_locks: dict[str, threading.Lock] = field(default_factory=dict)
    services: dict[str, tuple[Service, float]] = field(default_factory=dict)
    acks: dict[str, float] = field(default_factory=dict)
    account_info: dict[str, tuple[int, int, float]] = field(default_factory=dict)
    sessions: dict[str, CachedSession] = field(default_factory=dict)

    def provider_lock(self, provider: str) -> threading.Lock:
        """The lock of ``provider`` (created on first use)."""
        with self.lock:
            return self.provider_locks.setdefault(provider, threading.Lock())
