"""Chain account and service state as the gateway sees it, with caching (``provider-gateway.md``
B1 start-up sync, B3 check 8, B4).

* accounts: ``getAccountsByProvider`` in pages of 50 at start, then per user ``getAccount`` cached
  ``account_ttl`` seconds (default 600); ``refresh=True`` forces a read;
* the gateway's own service (prices, ``teeSignerAcknowledged``): cached ``service_ttl`` (900 s).

Calls are synchronous (web3); the app runs them in a worker thread.
"""

from __future__ import annotations

import threading
import time

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
    """

    def __init__(self, contract: InferenceServingContract, provider: str, *,
                 account_ttl: float = 600.0, service_ttl: float = 900.0) -> None:
        self.contract = contract
        self.provider = provider
        self.account_ttl = account_ttl
        self.service_ttl = service_ttl
        self._accounts: dict[str, tuple[float, Account | None]] = {}
        self._service: tuple[float, Service | None] | None = None
        self._lock = threading.Lock()

    def sync_all(self) -> int:
        """Load every account of this provider (``getAccountsByProvider``, pages of 50).

        Returns:
            The number of accounts loaded.
        """
        offset, loaded = 0, 0
        fn = self.contract.contract.functions.getAccountsByProvider
        while True:
            accounts, total = self.contract._call(fn(self.provider, offset, PAGE_SIZE),
                                                  from_=self.provider)
            now = time.monotonic()
            with self._lock:
                for raw in accounts:
                    acc = Account.from_tuple(raw)
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
        if not refresh:
            with self._lock:
                hit = self._accounts.get(key)
            if hit is not None and time.monotonic() - hit[0] < self.account_ttl:
                return hit[1]
        try:
            acc: Account | None = self.contract.get_account(user, self.provider)
        except ContractRevertError as exc:
            if exc.error_name != "AccountNotExists":
                raise
            acc = None
        with self._lock:
            self._accounts[key] = (time.monotonic(), acc)
        return acc

    def invalidate(self, user: str | None = None) -> None:
        """Forget one user's cached account (or all)."""
        with self._lock:
            if user is None:
                self._accounts.clear()
            else:
                self._accounts.pop(user.lower(), None)

    def service(self, *, refresh: bool = False) -> Service | None:
        """This provider's on-chain service, or ``None`` when not registered."""
        if not refresh and self._service is not None \
                and time.monotonic() - self._service[0] < self.service_ttl:
            return self._service[1]
        try:
            svc: Service | None = self.contract.get_service(self.provider)
        except ContractRevertError as exc:
            if exc.error_name != "ServiceNotExist":
                raise
            svc = None
        self._service = (time.monotonic(), svc)
        return svc
