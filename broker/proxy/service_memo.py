"""The provider's service as the hot path reads it: the inference broker's 10-minute cache, asked
for at most once per :data:`SERVICE_MEMO_S` seconds, so that most requests read it with no thread
hop (a cache miss may read the chain, so the ask itself runs in a worker thread)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool

if TYPE_CHECKING:
    from broker.inference.broker import InferenceBroker
    from broker.inference.models import Service

__all__ = ["SERVICE_MEMO_S", "ServiceMemo"]

#: Seconds a :class:`ServiceMemo` reuses the service without asking the inference broker again.
SERVICE_MEMO_S = 1.0


class ServiceMemo:
    """One provider's :class:`~broker.inference.models.Service`, memoised for
    :data:`SERVICE_MEMO_S` seconds.

    Args:
        inference: the user's inference broker (``get_service``).
        provider: checksummed provider address.
    """

    def __init__(self, inference: InferenceBroker, provider: str) -> None:
        self.inference = inference
        self.provider = provider
        self._cached: tuple[Service, float] | None = None

    async def get(self) -> Service:
        """The service (memoised; else ``get_service`` in a worker thread).

        Raises:
            The inference broker's errors (e.g. ``UnknownProviderError``, ``RPCError``).
        """
        cached = self._cached
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        service = await run_in_threadpool(self.inference.get_service, self.provider)
        self._cached = (service, now + SERVICE_MEMO_S)
        return service

    async def refresh(self) -> Service:
        """Read the service from the chain now (``refresh=True``) and memoise it.

        Raises:
            The inference broker's errors.
        """
        service = await run_in_threadpool(self.inference.get_service, self.provider, refresh=True)
        self._cached = (service, time.monotonic() + SERVICE_MEMO_S)
        return service
