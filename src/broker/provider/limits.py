"""Rate, concurrency and in-flight limits (``provider-gateway.md`` B6).

* per client IP on ``/v1/proxy/*``: token bucket (default 15/s, burst 20) ⇒ 429;
* per client IP on the other ``/v1`` handler routes (quote, models, unsettledfee, async): a separate
  token bucket (default 10/s, burst 20) ⇒ 429;
* global in-flight cap (default 20), non-blocking ⇒ 503;
* per user: token bucket ``per_user_rpm``/min with burst (default 30/min, burst 5) ⇒ 429, and at most
  ``max_per_user_concurrent`` (default 5) requests in flight ⇒ 429.

Every refusal carries ``retry_after`` (whole seconds, ≥ 1) for the ``Retry-After`` header.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from broker.provider.errors import OverloadedError, RateLimitedError

__all__ = ["InFlight", "KeyedBuckets", "Limits", "TokenBucket", "client_ip"]

IP_MESSAGE = "Too many requests. Please try again later."
GLOBAL_MESSAGE = "Server is currently processing too many requests. Please try again later."


@dataclass
class TokenBucket:
    """A token bucket: ``rate`` tokens per second, capacity ``burst``; starts full."""

    rate: float
    burst: int
    tokens: float = field(default=-1.0)
    stamp: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.tokens < 0:
            self.tokens = float(self.burst)

    def _refill(self, now: float) -> None:
        self.tokens = min(float(self.burst), self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def try_take(self, now: float | None = None) -> float:
        """Take one token. Returns 0.0 on success, else the seconds until one is available."""
        now = time.monotonic() if now is None else now
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate

    def remaining(self) -> int:
        """Whole tokens left now."""
        self._refill(time.monotonic())
        return int(self.tokens)


class KeyedBuckets:
    """One :class:`TokenBucket` per key (IP or user), at most ``max_keys`` kept (LRU)."""

    def __init__(self, rate: float, burst: int, max_keys: int = 100_000) -> None:
        self.rate, self.burst, self.max_keys = rate, burst, max_keys
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: str) -> float:
        """As :meth:`TokenBucket.try_take` for ``key``."""
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                bucket = self._buckets[key] = TokenBucket(self.rate, self.burst)
                if len(self._buckets) > self.max_keys:
                    self._buckets.popitem(last=False)
            else:
                self._buckets.move_to_end(key)
            return bucket.try_take()

    def remaining(self, key: str) -> int:
        """Whole tokens left for ``key``."""
        with self._lock:
            bucket = self._buckets.get(key)
            return self.burst if bucket is None else bucket.remaining()


class InFlight:
    """A non-blocking counter of requests in flight, globally or per key."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str = "") -> int | None:
        """Count one more request for ``key``; returns ``None`` when acquired, else the current count."""
        with self._lock:
            n = self._counts.get(key, 0)
            if n >= self.limit:
                return n
            self._counts[key] = n + 1
            return None

    def release(self, key: str = "") -> None:
        """Count one request fewer for ``key``."""
        with self._lock:
            n = self._counts.get(key, 0) - 1
            if n <= 0:
                self._counts.pop(key, None)
            else:
                self._counts[key] = n

    def count(self, key: str = "") -> int:
        """Requests in flight for ``key``."""
        with self._lock:
            return self._counts.get(key, 0)


def client_ip(headers, peer: str | None) -> str:
    """The client IP of B6: first ``X-Forwarded-For`` entry, else ``X-Real-IP``, else the peer."""
    xff = headers.get("x-forwarded-for")
    if xff:
        first = xff.split(",")[0].strip()
        if first:
            return first
    real = headers.get("x-real-ip")
    if real and real.strip():
        return real.strip()
    return peer or "unknown"


def _retry(seconds: float) -> int:
    return max(1, math.ceil(seconds))


class Limits:
    """All B6 limits of one gateway.

    Args:
        per_ip_rps, per_ip_burst: per-IP bucket (requests per second, capacity).
        per_user_rpm, per_user_burst: per-user bucket (requests per minute, capacity).
        max_per_user_concurrent: per-user in-flight cap.
        max_global_concurrent: global in-flight cap.
        handler_ip_rps, handler_ip_burst: per-IP bucket of the other ``/v1`` routes (B6: 10/s,
            burst 20). ``None``: ``2/3 × per_ip_rps`` and ``per_ip_burst`` (the B6 ratio, so the
            defaults give exactly 10/s and 20, and raising the proxy bucket raises this one).
    """

    def __init__(self, *, per_ip_rps: float = 15.0, per_ip_burst: int = 20,
                 per_user_rpm: int = 30, per_user_burst: int = 5,
                 max_per_user_concurrent: int = 5, max_global_concurrent: int = 20,
                 handler_ip_rps: float | None = None,
                 handler_ip_burst: int | None = None) -> None:
        self.per_user_rpm = per_user_rpm
        self.ip = KeyedBuckets(per_ip_rps, per_ip_burst)
        self.handler_ip = KeyedBuckets(
            handler_ip_rps if handler_ip_rps is not None else per_ip_rps * 2 / 3,
            handler_ip_burst if handler_ip_burst is not None else per_ip_burst)
        self.user = KeyedBuckets(per_user_rpm / 60.0, per_user_burst)
        self.user_inflight = InFlight(max_per_user_concurrent)
        self.global_inflight = InFlight(max_global_concurrent)

    def check_ip(self, ip: str) -> None:
        """The ``/v1/proxy`` per-IP bucket (B6.1). Raises :class:`RateLimitedError` (429) when
        the IP's bucket is empty."""
        wait = self.ip.take(ip)
        if wait:
            raise RateLimitedError(IP_MESSAGE, retry_after=_retry(wait))

    def check_handler_ip(self, ip: str) -> None:
        """The per-IP bucket of the other ``/v1`` routes (B6, last line). Raises
        :class:`RateLimitedError` (429) when the IP's bucket is empty."""
        wait = self.handler_ip.take(ip)
        if wait:
            raise RateLimitedError(IP_MESSAGE, retry_after=_retry(wait))

    def enter_global(self) -> None:
        """Take a global in-flight slot. Raises :class:`OverloadedError` (503) when full."""
        if self.global_inflight.acquire() is not None:
            raise OverloadedError(GLOBAL_MESSAGE, retry_after=1)

    def leave_global(self) -> None:
        """Release a global in-flight slot."""
        self.global_inflight.release()

    def enter_user(self, user: str) -> None:
        """Per-user rate bucket then in-flight slot (B6.4). Raises :class:`RateLimitedError` (429)."""
        key = user.lower()
        wait = self.user.take(key)
        if wait:
            raise RateLimitedError(
                "Rate limit exceeded. Please slow down your request rate "
                f"(limit: {self.per_user_rpm} requests/min).", retry_after=_retry(wait))
        busy = self.user_inflight.acquire(key)
        if busy is not None:
            raise RateLimitedError(
                f"Too many concurrent requests. You have {busy} active requests "
                f"(limit: {self.user_inflight.limit}). Please wait for some to complete.",
                retry_after=1)

    def leave_user(self, user: str) -> None:
        """Release the user's in-flight slot."""
        self.user_inflight.release(user.lower())

    def user_headers(self, user: str) -> dict[str, str]:
        """``x-ratelimit-*-requests`` headers for the user's bucket (B6.4)."""
        key = user.lower()
        remaining = self.user.remaining(key)
        reset = math.ceil((self.user.burst - remaining) / self.user.rate) if remaining < self.user.burst else 0
        return {"x-ratelimit-limit-requests": str(self.per_user_rpm),
                "x-ratelimit-remaining-requests": str(remaining),
                "x-ratelimit-reset-requests": f"{reset}s"}
