"""Rate, concurrency and in-flight limits (``provider-gateway.md`` B6).

* per client IP on ``/v1/proxy/*``: token bucket (default 15/s, burst 20) ⇒ 429;
* per client IP on the other ``/v1`` handler routes (quote, models, unsettledfee, async): a separate
  token bucket (default 10/s, burst 20) ⇒ 429;
* global in-flight cap (default 20), non-blocking ⇒ 503;
* per user: token bucket ``per_user_rpm``/min with burst (default 30/min, burst 5) ⇒ 429, and at
  most ``max_per_user_concurrent`` (default 5) requests in flight ⇒ 429.

Every refusal carries ``retry_after`` (whole seconds, ≥ 1) for the ``Retry-After`` header.

Per-user 429 messages keep B6's wire text but name the limit that was actually hit: the per-minute
rate (``limit: 30 requests/min``) only when the user did send ``per_user_rpm`` requests in the last
60 s; otherwise the burst ran out (``limit: burst of 5 requests, refilled at 30 requests/min``).

Client IP (B6 keys the IP buckets on the first ``X-Forwarded-For`` entry, which any client can
write): here ``X-Forwarded-For`` / ``X-Real-IP`` are believed only when the peer is one of
``trusted_proxies``, and then the first untrusted hop from the right is the client (see
:func:`client_ip`). With no trusted proxies (the default) the peer address is the client.
"""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from broker.provider.errors import OverloadedError, RateLimitedError

__all__ = [
    "InFlight",
    "KeyedBuckets",
    "Limits",
    "TokenBucket",
    "client_ip",
    "ip_bucket_key",
    "parse_trusted_proxies",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

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
        """Count one more request for ``key``; returns ``None`` when acquired, else the current
        count."""
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


def parse_trusted_proxies(entries: Iterable[str]) -> tuple[IPNetwork, ...]:
    """IP addresses or CIDR blocks (``"10.0.0.0/8"``, ``"::1"``) → networks.

    Raises:
        ValueError: an entry is neither (the message names it).
    """
    out = []
    for entry in entries:
        text = str(entry).strip()
        try:
            out.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            raise ValueError(
                f"trusted proxy {text[:60]!r} is not an IP address or CIDR block"
            ) from None
    return tuple(out)


def _parse_ip(text: str | None) -> IPAddress | None:
    """An address from a peer or a forwarded hop (``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``,
    ``::1``); IPv4-mapped IPv6 addresses are unmapped; ``None`` when it is not an address."""
    text = (text or "").strip().strip('"')
    if text.startswith("["):
        end = text.find("]")
        text = text[1:end] if end > 0 else ""
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    mapped = getattr(ip, "ipv4_mapped", None)
    return mapped or ip


def _trusted(ip: IPAddress, proxies: tuple[IPNetwork, ...]) -> bool:
    return any(ip.version == net.version and ip in net for net in proxies)


def _header_values(headers, name: str) -> list[str]:
    getlist = getattr(headers, "getlist", None)
    if getlist is not None:
        return list(getlist(name))
    value = headers.get(name)
    return [value] if value else []


#: Prefix length one IPv6 client is given: a /64 is one subscriber's network, and a host picks
#: any of its 2**64 addresses, so keying on the full address would give it a bucket per address.
IPV6_BUCKET_PREFIX = 64


def ip_bucket_key(ip: str) -> str:
    """The per-IP bucket key of a client address (B6): an IPv4 address itself, an IPv6 address
    its ``/64`` network (``2001:db8:1:2::/64``); anything else (``"unknown"``) unchanged.

    Args:
        ip: an address as :func:`client_ip` returns it.

    Returns:
        The key (text).
    """
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip
    if addr.version == 4:
        return ip
    return str(ipaddress.ip_network(f"{addr}/{IPV6_BUCKET_PREFIX}", strict=False))


def client_ip(headers, peer: str | None, trusted_proxies: Iterable[IPNetwork] = ()) -> str:
    """The client IP the per-IP limits key on.

    * The peer is not a trusted proxy (always so with no ``trusted_proxies``): the peer.
    * The peer is trusted: walk ``X-Forwarded-For`` (all its header lines, in order) from the right,
      skipping trusted hops; the first untrusted hop is the client. A hop that is not an address
      stops the walk at the trusted hop after it (a proxy we trust wrote what follows; what it was
      given is not believed). Every hop trusted: the leftmost one.
    * The peer is trusted and there is no ``X-Forwarded-For``: ``X-Real-IP`` when it is an
      address, else the peer.

    Args:
        headers: request headers (Starlette ``Headers`` or a ``dict`` with lower-case names).
        peer: the TCP peer address (``None`` when unknown: ``"unknown"`` is returned).
        trusted_proxies: networks of :func:`parse_trusted_proxies`.

    Returns:
        The address in canonical text form.
    """
    proxies = tuple(trusted_proxies)
    peer_ip = _parse_ip(peer)
    if peer_ip is None:
        return peer or "unknown"
    if not proxies or not _trusted(peer_ip, proxies):
        return str(peer_ip)
    hops = [
        hop
        for value in _header_values(headers, "x-forwarded-for")
        for hop in value.split(",")
        if hop.strip()
    ]
    if hops:
        nearest = peer_ip
        for hop in reversed(hops):
            ip = _parse_ip(hop)
            if ip is None:
                return str(nearest)
            if not _trusted(ip, proxies):
                return str(ip)
            nearest = ip
        return str(nearest)
    real = _parse_ip(headers.get("x-real-ip"))
    return str(real) if real is not None else str(peer_ip)


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
        trusted_proxies: IPs / CIDR blocks whose ``X-Forwarded-For`` is believed
            (:meth:`client_ip`); default none.

    Raises:
        ValueError: a trusted proxy entry is not an address or CIDR block.
    """

    def __init__(
        self,
        *,
        per_ip_rps: float = 15.0,
        per_ip_burst: int = 20,
        per_user_rpm: int = 30,
        per_user_burst: int = 5,
        max_per_user_concurrent: int = 5,
        max_global_concurrent: int = 20,
        handler_ip_rps: float | None = None,
        handler_ip_burst: int | None = None,
        trusted_proxies: Iterable[str] = (),
    ) -> None:
        self.per_user_rpm = per_user_rpm
        self.trusted_proxies = parse_trusted_proxies(trusted_proxies)
        # accepted request times per user over the last minute (at most per_user_rpm kept), to
        # tell a spent burst from a reached per-minute rate
        self._recent: OrderedDict[str, deque[float]] = OrderedDict()
        self._recent_lock = threading.Lock()
        self.ip = KeyedBuckets(per_ip_rps, per_ip_burst)
        self.handler_ip = KeyedBuckets(
            handler_ip_rps if handler_ip_rps is not None else per_ip_rps * 2 / 3,
            handler_ip_burst if handler_ip_burst is not None else per_ip_burst,
        )
        self.user = KeyedBuckets(per_user_rpm / 60.0, per_user_burst)
        self.user_inflight = InFlight(max_per_user_concurrent)
        self.global_inflight = InFlight(max_global_concurrent)

    def client_ip(self, headers, peer: str | None) -> str:
        """:func:`client_ip` with this gateway's ``trusted_proxies``."""
        return client_ip(headers, peer, self.trusted_proxies)

    def _note_accepted(self, key: str, now: float) -> None:
        with self._recent_lock:
            times = self._recent.get(key)
            if times is None:
                times = self._recent[key] = deque(maxlen=max(1, self.per_user_rpm))
                if len(self._recent) > self.user.max_keys:
                    self._recent.popitem(last=False)
            else:
                self._recent.move_to_end(key)
            times.append(now)

    def _per_minute_reached(self, key: str, now: float) -> bool:
        with self._recent_lock:
            times = self._recent.get(key, ())
            return sum(1 for t in times if now - t < 60.0) >= self.per_user_rpm

    def check_ip(self, ip: str) -> None:
        """The ``/v1/proxy`` per-IP bucket (B6.1). Raises :class:`RateLimitedError` (429) when
        the IP's bucket is empty (an IPv6 client: its /64, :func:`ip_bucket_key`)."""
        wait = self.ip.take(ip_bucket_key(ip))
        if wait:
            raise RateLimitedError(IP_MESSAGE, retry_after=_retry(wait))

    def check_handler_ip(self, ip: str) -> None:
        """The per-IP bucket of the other ``/v1`` routes (B6, last line). Raises
        :class:`RateLimitedError` (429) when the IP's bucket is empty (IPv6: its /64)."""
        wait = self.handler_ip.take(ip_bucket_key(ip))
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
        """Per-user rate bucket then in-flight slot (B6.4).

        Raises:
            RateLimitedError: 429 naming the limit hit: the burst, the per-minute rate, or the
                concurrent requests.
        """
        key = user.lower()
        wait = self.user.take(key)
        now = time.monotonic()
        if wait:
            if self._per_minute_reached(key, now):
                limit = f"{self.per_user_rpm} requests/min"
            else:
                limit = (
                    f"burst of {self.user.burst} requests, refilled at "
                    f"{self.per_user_rpm} requests/min"
                )
            raise RateLimitedError(
                f"Rate limit exceeded. Please slow down your request rate (limit: {limit}).",
                retry_after=_retry(wait),
            )
        self._note_accepted(key, now)
        busy = self.user_inflight.acquire(key)
        if busy is not None:
            raise RateLimitedError(
                f"Too many concurrent requests. You have {busy} active requests "
                f"(limit: {self.user_inflight.limit}). Please wait for some to complete.",
                retry_after=1,
            )

    def leave_user(self, user: str) -> None:
        """Release the user's in-flight slot."""
        self.user_inflight.release(user.lower())

    def user_headers(self, user: str) -> dict[str, str]:
        """``x-ratelimit-*-requests`` headers for the user's bucket (B6.4)."""
        key = user.lower()
        remaining = self.user.remaining(key)
        reset = (
            math.ceil((self.user.burst - remaining) / self.user.rate)
            if remaining < self.user.burst
            else 0
        )
        return {
            "x-ratelimit-limit-requests": str(self.per_user_rpm),
            "x-ratelimit-remaining-requests": str(remaining),
            "x-ratelimit-reset-requests": f"{reset}s",
        }
