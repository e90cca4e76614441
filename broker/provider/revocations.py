"""Revocations that take effect within a block: a poller of the InferenceServing events that change
what B3 check 8 reads (``provider-gateway.md`` B3 step 8, B4; ``contracts.md`` A3.4).

The reference caches ``getAccount`` for 10 minutes, so a ``revokeToken`` / ``revokeAllTokens`` was
honoured only when the entry expired. This watcher keeps that cheap cache (no chain call per request
in steady state) but drops a user's entry as soon as one of these events for this provider is
mined:

* ``TokenRevoked(user, provider, tokenId)``, ``TokensRevoked(user, provider, tokenIds)``;
* ``AllTokensRevoked(user, provider, newGeneration)``;
* ``AccountDeleted(user, provider, refundedAmount)``.

One ``eth_blockNumber`` every ``interval`` seconds, plus one ``eth_getLogs`` (filtered on the
contract address, the four topics and the provider as ``topic2``) when blocks were added. The next
request of an affected user re-reads ``getAccount`` and the B3 checks see the new generation /
bitmap.

While the watcher is not keeping up (never polled, or its last successful poll is older than
``stale_after`` seconds, e.g. the node does not answer ``eth_getLogs``),
:class:`~broker.provider.accounts.AccountCache` falls back to a short TTL for every entry, so a
revocation still takes effect within that TTL.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from web3 import Web3

from broker._exceptions import RPCError
from broker.chain.sender import rpc_guard

if TYPE_CHECKING:
    from broker.provider.accounts import AccountCache

__all__ = ["REVOCATION_EVENTS", "RevocationWatcher"]

logger = logging.getLogger(__name__)

#: topic0 of the events that invalidate a cached account (``contracts.md`` A3.4).
REVOCATION_EVENTS: dict[str, str] = {
    "TokenRevoked": "0xcf558f061a5a4e28657b8e5c662b95b8258d880896e7a859299457be036ed4a4",
    "TokensRevoked": "0x70147140547b3e1660123a6725577c5574b4d40747abe6ff7c458f449e18b84f",
    "AllTokensRevoked": "0x989726e0ba0fa7747d8a6618329b929bfcc4f3ac46de5930a368310944f75547",
    "AccountDeleted": "0x342d961f860d5b1c27877a790eff2b213c020d1955a4903d6a9bf3ed590b7cd7",
}

#: Largest block range asked in one ``eth_getLogs``; a longer gap drops the whole cache instead.
MAX_LOG_RANGE = 2_000


def _topic_address(address: str) -> str:
    return "0x" + "0" * 24 + address.lower().removeprefix("0x")


class RevocationWatcher:
    """Polls the revocation events of one provider and invalidates the account cache entries.

    Args:
        w3: a connected :class:`~web3.Web3` (calls are synchronous).
        contract_address: the InferenceServing address.
        accounts: the :class:`~broker.provider.accounts.AccountCache` to invalidate; the watcher
            registers itself as its ``watcher``.
        interval: seconds between polls (> 0).
        stale_after: seconds without a successful poll after which the cache falls back to its
            short TTL (default ``3 × interval + 5``).

    The starting block is read here (call this before ``accounts.sync_all()`` so that nothing mined
    between the initial sync and the first poll is missed).

    Raises:
        RPCError: the node cannot be reached for the starting block.
    """

    def __init__(
        self,
        w3: Web3,
        contract_address: str,
        accounts: AccountCache,
        *,
        interval: float = 2.0,
        stale_after: float | None = None,
    ) -> None:
        if interval <= 0:
            raise ValueError("interval must be positive (seconds)")
        self.w3 = w3
        self.contract_address = Web3.to_checksum_address(contract_address)
        self.accounts = accounts
        self.interval = float(interval)
        self.stale_after = float(stale_after if stale_after is not None else 3 * interval + 5)
        self._topics: list[Any] = [
            list(REVOCATION_EVENTS.values()),
            None,
            _topic_address(accounts.provider),
        ]
        self._next_block = self._block_number() + 1
        self._last_ok: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.invalidations = 0
        accounts.watcher = self

    # ------------------------------------------------------------------------------ state

    @property
    def healthy(self) -> bool:
        """``True`` while the last successful poll is younger than ``stale_after`` seconds."""
        last = self._last_ok
        return last is not None and time.monotonic() - last < self.stale_after

    @property
    def next_block(self) -> int:
        """The first block the next poll reads."""
        return self._next_block

    # ------------------------------------------------------------------------------ polling

    def _block_number(self) -> int:
        with rpc_guard("eth_blockNumber"):
            return int(self.w3.eth.block_number)

    def poll_once(self) -> int:
        """Read the new blocks' revocation events and invalidate the users they name.

        Returns:
            How many cache entries were invalidated (a dropped cache counts 1).

        Raises:
            RPCError: the node did not answer (nothing is skipped: the same blocks are read on the
                next poll).
        """
        head = self._block_number()
        start = self._next_block
        if head < start - 1:  # the chain went back (a devnet reset, a reorg)
            self.accounts.invalidate()
            self._next_block = head + 1
            self._mark_ok()
            return 1
        if head < start:
            self._mark_ok()
            return 0
        if head - start + 1 > MAX_LOG_RANGE:  # too far behind: drop everything, resume at head
            logger.warning(
                "revocation watcher %d blocks behind; dropping the account cache", head - start + 1
            )
            self.accounts.invalidate()
            self._next_block = head + 1
            self._mark_ok()
            return 1
        with rpc_guard("eth_getLogs"):
            logs = self.w3.eth.get_logs(
                {
                    "address": self.contract_address,
                    "fromBlock": start,
                    "toBlock": head,
                    "topics": self._topics,
                }
            )
        users = {
            "0x" + bytes(log["topics"][1]).hex()[-40:] for log in logs if len(log["topics"]) > 1
        }
        for user in users:
            self.accounts.invalidate(Web3.to_checksum_address(user))
        if users:
            logger.info(
                "revocation events in blocks %d-%d: %d account(s) re-read on next use",
                start,
                head,
                len(users),
            )
        self.invalidations += len(users)
        self._next_block = head + 1
        self._mark_ok()
        return len(users)

    def _mark_ok(self) -> None:
        self._last_ok = time.monotonic()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except RPCError as exc:
                logger.warning("revocation watcher: %s", exc)
            except Exception:
                logger.exception("revocation watcher poll failed")
            self._stop.wait(self.interval)

    # ------------------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start the daemon polling thread (no-op when already running)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="revocation-watcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the polling thread and wait up to ``timeout`` seconds for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
