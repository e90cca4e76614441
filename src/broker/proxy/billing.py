"""Fee accounting in the proxy (``user-broker.md`` §7.2): each answered request's fee, from the
on-chain prices and the extractor of the provider's service type, is added to the inference broker's
:class:`~broker.inference.fee_store.FeeStore` (neuron) and to the metrics.

What is billed: chat and audio by the response ``usage`` (streams: the last SSE chunk with usage,
collected by :class:`~broker.inference.fees.UsageStreamCollector`); images by the **request** ``n``
(once, at submission for async jobs: polling never bills, fixing §13 item 3's double counting).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool

from broker.inference.errors import UnknownServiceTypeError, UsageError
from broker.inference.fees import fee_for_content

if TYPE_CHECKING:
    from broker.inference.broker import InferenceBroker
    from broker.proxy.metrics import ProxyMetrics

__all__ = ["Billing"]

logger = logging.getLogger(__name__)


class Billing:
    """Accounts fees of one provider for the user.

    Args:
        inference: the user's inference broker (service prices, fee store).
        provider: checksummed provider address.
        metrics: counters to update (optional).
    """

    def __init__(self, inference: InferenceBroker, provider: str,
                 metrics: ProxyMetrics | None = None) -> None:
        self.inference = inference
        self.provider = provider
        self.metrics = metrics

    def fee_of(self, content: bytes | str | Mapping[str, Any] | None) -> int:
        """The fee in neuron of ``content`` (usage JSON or image request) at the on-chain prices of
        the provider's service type; 0 (logged) when it cannot be computed."""
        service = self.inference.get_service(self.provider)
        try:
            return fee_for_content(service.service_type, content, service.input_price,
                                   service.output_price)
        except (UnknownServiceTypeError, UsageError) as exc:
            logger.warning("fee not accounted for %s: %s", self.provider, exc)
            return 0

    def _record(self, content: bytes | str | Mapping[str, Any] | None) -> int:
        fee = self.fee_of(content)
        self.inference.fee_store.add_fee(self.inference.address, self.provider, fee)
        return fee

    async def record(self, content: bytes | str | Mapping[str, Any] | None) -> int:
        """Account one answered request; returns its fee (neuron). ``content`` ``None`` (no usage
        reported) bills nothing and records nothing."""
        if content is None:
            return 0
        fee = await run_in_threadpool(self._record, content)
        if self.metrics is not None and fee:
            self.metrics.fees.inc(fee)
        return fee
