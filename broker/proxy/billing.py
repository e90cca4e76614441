"""Fee accounting in the proxy (``user-broker.md`` §7.2): each answered request's fee, from the
on-chain prices and the extractor of the provider's service type, is added to the inference broker's
:class:`~broker.inference.fee_store.FeeStore` (neuron) and to the metrics.

A response that ``serve --verify enforce`` refused is still billed by the provider: its fee is
recorded as *disputed* (separately, with the reason), so the local books match the gateway's.

What is billed: chat and audio answers by the gateway's own rule
(:func:`broker.wire.fees.response_counts` on the answer, :class:`AnswerBody`): the ``usage``
(streams: the last SSE event with usage), else the B9 word-count fallback, so the local books
match the provider's bill also for a backend that reports no usage; images by the **request**
``n``.

Async image jobs are billed as the provider bills them (provider-gateway.md B9): nothing at
submission (the job id and its ``n`` are recorded in the fee store), ``n × outputPrice`` exactly
once when a poll first reports the job ``completed``, and never when it fails or the provider no
longer knows it (404). The job's state lives in the fee store's database, so a restarted ``serve``
neither loses nor double-counts it (and §13 item 3's double counting on polls cannot happen).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool

from broker.inference.fee_store import AsyncJobStatus
from broker.proxy.service_memo import ServiceMemo
from broker.wire.errors import UnknownServiceTypeError, UsageError
from broker.wire.fees import (
    calculate_fee,
    extract_text_to_image_usage,
    fee_for_content,
    response_counts,
)
from broker.wire.sse import SSESummary

if TYPE_CHECKING:
    from broker.inference.broker import InferenceBroker
    from broker.inference.models import Service
    from broker.inference.response_signature import VerificationResult
    from broker.proxy.metrics import ProxyMetrics

__all__ = ["AnswerBody", "AsyncJobOutcome", "Billing"]

logger = logging.getLogger(__name__)


class AsyncJobOutcome(enum.StrEnum):
    """What one job poll changed locally (:meth:`Billing.observe_async_job`)."""

    BILLED = "billed"  # first ``completed``: the fee was accounted now
    FAILED = "failed"  # first ``failed`` / 404: marked failed, never billed
    UNCHANGED = "unchanged"  # still running, already billed/failed, or unknown to this store


@dataclass(frozen=True, slots=True)
class AnswerBody:
    """A successful chat or audio answer, billed as the gateway bills it (B9,
    :func:`broker.wire.fees.response_counts`).

    Attributes:
        body: the answer's body, decoded from any content coding (``b""`` for a stream).
        stream: the stream's :class:`~broker.wire.sse.SSESummary` (usage, chat id, text), read
            once while it was relayed; ``None`` for a non-streamed answer.
    """

    body: bytes = b""
    stream: SSESummary | None = None


class Billing:
    """Accounts fees of one provider for the user.

    Args:
        inference: the user's inference broker (service prices, fee store).
        provider: checksummed provider address.
        metrics: counters to update (optional).
    """

    def __init__(
        self, inference: InferenceBroker, provider: str, metrics: ProxyMetrics | None = None
    ) -> None:
        self.inference = inference
        self.provider = provider
        self.metrics = metrics
        self._services = ServiceMemo(inference, provider)

    def fee_of(
        self,
        content: AnswerBody | bytes | str | Mapping[str, Any] | None,
        service: Service | None = None,
    ) -> int:
        """The fee in neuron of ``content`` (an :class:`AnswerBody`, a usage JSON or an image
        request) at the on-chain prices of the provider's service type (``service``, default
        ``get_service``: may read the chain); 0 (logged) when it cannot be computed."""
        if service is None:
            service = self.inference.get_service(self.provider)
        try:
            if isinstance(content, AnswerBody):
                counts = response_counts(
                    service.service_type,
                    content.body,
                    streamed=content.stream is not None,
                    stream_summary=content.stream,
                )
                return calculate_fee(counts, service.input_price, service.output_price)
            return fee_for_content(
                service.service_type, content, service.input_price, service.output_price
            )
        except (UnknownServiceTypeError, UsageError) as exc:
            logger.warning("fee not accounted for %s: %s", self.provider, exc)
            return 0

    async def record(
        self,
        content: AnswerBody | bytes | str | Mapping[str, Any] | None,
        *,
        disputed: VerificationResult | None = None,
        chat_id: str | None = None,
        verification: VerificationResult | None = None,
    ) -> int:
        """Account one answered request; returns its fee (neuron) once it is committed to the fee
        store (an acknowledged fee survives ``kill -9``). ``content`` ``None`` (no usage reported)
        bills nothing and records nothing. No worker-thread hop: the prices come from the
        memoised service, the write goes to the store's writer (SQLite group commit).

        Args:
            content: the answer, a usage JSON or an image request (see :meth:`fee_of`).
            disputed: the failed verification of a response that ``enforce`` refused: the fee is
                recorded as disputed (:meth:`FeeStore.record_disputed
                <broker.inference.fee_store.FeeStore.record_disputed>`), not as accepted.
            chat_id: the response's chat id (kept with a disputed fee).
            verification: the response's verification result, stored in the verification log in
                the same transaction as the fee (also when ``content`` is ``None``); not with
                ``disputed``.
        """
        store, user = self.inference.fee_store, self.inference.address
        if content is None:
            if verification is not None:
                await store.arecord_verification(user, self.provider, verification)
            return 0
        fee = self.fee_of(content, await self._services.get())
        if disputed is not None:
            await store.arecord_disputed(user, self.provider, chat_id, fee, disputed.reason.value)
        else:
            await store.arecord_exchange(user, self.provider, fee=fee, verification=verification)
        if self.metrics is not None and fee:
            if disputed is None:
                self.metrics.fees.inc(fee)
            else:
                self.metrics.disputed_fees.inc(fee)
        return fee

    # -- async image jobs --------------------------------------------------------------------

    async def record_async_job(self, job_id: str, request: Mapping[str, Any]) -> bool:
        """Remember a job the provider accepted (202 with ``jobId``) with the request's image
        count ``n`` (default 1); nothing is billed yet.

        Returns:
            True when newly recorded (False: already known).

        Raises:
            ValueError: an empty or over-long ``job_id``.
        """
        images = extract_text_to_image_usage(request).output_count
        store = self.inference.fee_store
        return await run_in_threadpool(
            store.record_async_job, self.inference.address, self.provider, job_id, images
        )

    def _observe(self, job_id: str, status_code: int, body: Any) -> tuple[AsyncJobOutcome, int]:
        store, user = self.inference.fee_store, self.inference.address
        status = body.get("status") if isinstance(body, dict) else None
        if status_code == 200 and status == "completed":
            job = store.get_async_job(user, self.provider, job_id)
            if job is None or job.status is not AsyncJobStatus.PENDING:
                return AsyncJobOutcome.UNCHANGED, 0
            fee = self.fee_of({"n": job.images})
            if store.bill_async_job(user, self.provider, job_id, fee) is None:
                return AsyncJobOutcome.UNCHANGED, 0  # a concurrent poll billed it first
            return AsyncJobOutcome.BILLED, fee
        failed = status_code == 404 or (status_code == 200 and status == "failed")
        if failed and store.fail_async_job(user, self.provider, job_id):
            return AsyncJobOutcome.FAILED, 0
        return AsyncJobOutcome.UNCHANGED, 0

    async def observe_async_job(
        self, job_id: str, status_code: int, body: Any
    ) -> tuple[AsyncJobOutcome, int]:
        """Apply one poll answer of ``GET {url}/v1/async/jobs/{job_id}``.

        ``200`` with ``status == "completed"`` bills a ``pending`` job once: ``n × outputPrice``
        neuron (``n`` recorded at submission, the fee computed by
        :func:`broker.wire.fees.fee_for_content` at the current on-chain prices) added to the
        fee store atomically with the job's ``billed`` mark; ``200`` ``failed`` or ``404`` marks it
        ``failed`` (never billed); anything else (pending, running, other errors) changes nothing.
        Jobs this store never recorded are never billed.

        Args:
            job_id: the job id. status_code: the provider's HTTP status. body: its JSON (or None).

        Returns:
            ``(outcome, fee in neuron accounted by this call)``.
        """
        outcome, fee = await run_in_threadpool(self._observe, job_id, status_code, body)
        if self.metrics is not None and fee:
            self.metrics.fees.inc(fee)
        return outcome, fee
