"""Chain account and service state as the gateway sees it, with caching (``provider-gateway.md``
B1 start-up sync, B3 check 8, B4).

* accounts: ``getAccountsByProvider`` in pages of 50 at start, then per user ``getAccount`` cached
  ``account_ttl`` seconds (default 600) while a
  :class:`~broker.provider.revocations.RevocationWatcher` keeps up (it drops the entry of a user
  whose tokens are revoked), else ``fallback_ttl`` seconds (default 5); ``refresh=True`` forces a
  read. A read that overlaps an invalidation of the same user is returned but not cached;
* the gateway's own service (prices, ``teeSignerAcknowledged``): cached ``service_ttl`` (900 s).

Calls are synchronous (web3); the app runs them in a worker thread.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from broker.chain.contracts import Account, InferenceServingContract, Service
from broker.chain.errors import ContractRevertError

__all__ = ["PAGE_SIZE", "AccountCache"]

PAGE_SIZE = 50


class AccountCache:
    """Cached views of the InferenceServing contract for one provider.

    Args:
        contract: the InferenceServing wrapper.
        provider: this provider's checksummed address.
        account_ttl, service_ttl: cache lifetimes in seconds.
        fallback_ttl: account cache lifetime in seconds while no healthy revocation watcher is
            attached (``watcher``); a revocation takes effect within it.

    Attributes:
        watcher: the attached :class:`~broker.provider.revocations.RevocationWatcher` (set by it)
            or ``None``.
    """

    def __init__(
        self,
        contract: InferenceServingContract,
        provider: str,
        *,
        account_ttl: float = 600.0,
        service_ttl: float = 900.0,
        fallback_ttl: float = 5.0,
    ) -> None:
        self.contract = contract
        self.provider = provider
        self.account_ttl = account_ttl
        self.service_ttl = service_ttl
        self.fallback_ttl = fallback_ttl
        self.watcher: Any = None
        self._accounts: dict[str, tuple[float, Account | None]] = {}
        self._seq = 0  # invalidation counter
        self._dropped_at: dict[str, int] = {}  # user -> counter of its last invalidation
        self._all_dropped_at = 0
        self._service: tuple[float, Service | None] | None = None
        self._lock = threading.Lock()

    def sync_all(self) -> int:
        """Load every account of this provider (``getAccountsByProvider``, pages of 50).

        Returns:
            The number of accounts loaded.
        """
        offset, loaded = 0, 0
        while True:
            accounts, total = self.contract.get_accounts_by_provider(
                self.provider, offset, PAGE_SIZE
            )
            now = time.monotonic()
            with self._lock:
                for acc in accounts:
                    self._accounts[acc.user.lower()] = (now, acc)
                    loaded += 1
            offset += PAGE_SIZE
            if offset >= int(total) or not accounts:
                return loaded

    def get(self, user: str, *, refresh: bool = False) -> Account | None:
        """The (user, provider) account, or ``None`` when it does not exist.

        Raises:
            RPCError: the node cannot be reached.
        """
        key = user.lower()
        with self._lock:
            hit = self._accounts.get(key)
            seq = self._seq
        if not refresh and hit is not None and time.monotonic() - hit[0] < self.ttl():
            return hit[1]
        try:
            acc: Account | None = self.contract.get_account(user, self.provider)
        except ContractRevertError as exc:
            if exc.error_name != "AccountNotExists":
                raise
            acc = None
        with self._lock:
            if self._dropped_at.get(key, 0) <= seq and self._all_dropped_at <= seq:
                self._accounts[key] = (time.monotonic(), acc)
        return acc

    def peek(self, user: str) -> tuple[bool, Account | None]:
        """``(True, account or None)`` when ``user``'s entry is cached and younger than
        :meth:`ttl`, else ``(False, None)``; no I/O (safe on the event loop)."""
        with self._lock:
            hit = self._accounts.get(user.lower())
        if hit is None or time.monotonic() - hit[0] >= self.ttl():
            return False, None
        return True, hit[1]

    def peek_service(self) -> Service | None:
        """The cached service while younger than ``service_ttl``, else ``None``; no I/O."""
        cached = self._service
        if cached is None or time.monotonic() - cached[0] >= self.service_ttl:
            return None
        return cached[1]

    def is_cached(self, user: str) -> bool:
        """Whether ``user``'s account is cached and younger than :meth:`ttl`."""
        with self._lock:
            hit = self._accounts.get(user.lower())
        return hit is not None and time.monotonic() - hit[0] < self.ttl()

    def ttl(self) -> float:
        """Seconds an account entry is used: ``account_ttl`` while the revocation watcher keeps
        up, else ``min(account_ttl, fallback_ttl)``."""
        watcher = self.watcher
        if watcher is not None and watcher.healthy:
            return self.account_ttl
        return min(self.account_ttl, self.fallback_ttl)

    def invalidate(self, user: str | None = None) -> None:
        """Forget one user's cached account (or all); a read in flight for it is not cached."""
        with self._lock:
            self._seq += 1
            if user is None:
                self._accounts.clear()
                self._all_dropped_at = self._seq
            else:
                self._accounts.pop(user.lower(), None)
                self._dropped_at[user.lower()] = self._seq

    def service(self, *, refresh: bool = False) -> Service | None:
        """This provider's on-chain service, or ``None`` when not registered."""
        if (
            not refresh
            and self._service is not None
            and time.monotonic() - self._service[0] < self.service_ttl
        ):
            return self._service[1]
        try:
            svc: Service | None = self.contract.get_service(self.provider)
        except ContractRevertError as exc:
            if exc.error_name != "ServiceNotExist":
                raise
            svc = None
        self._service = (time.monotonic(), svc)
        return svc
