"""Response verification in the proxy: mode ``off | warn | enforce`` (``user-broker.md`` §8).

``warn`` (default) and ``enforce`` fetch the TEE signature of every response with a chat ID
(``ZG-Res-Key``, else the body ``id``) and check it with
:func:`broker.inference.response_signature.averify_response_signature`, bound to this exchange: the
signed text must name sha256 of the request as forwarded and of the response bytes as received
(:class:`~broker.inference.response_signature.ResponseBinding`). A chat id that already belonged to
an earlier response of this proxy (a swapped ``ZG-Res-Key``) is refused as ``chat_id_mismatch``
without fetching. The outcome goes to the ``X-0G-Verified`` header (``X-0G-Verification-Reason``
says why), the metrics and the fee store's verification log. ``enforce`` refuses a response that
does not verify (:class:`~broker.proxy.errors.VerificationRefusedError`, 502) before any byte of it
reaches the client.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

import httpx
from starlette.concurrency import run_in_threadpool

from broker.inference.response_signature import (
    ResponseBinding,
    VerificationReason,
    VerificationResult,
    averify_response_signature,
)
from broker.proxy.errors import VerificationRefusedError

if TYPE_CHECKING:
    from broker.inference.broker import InferenceBroker
    from broker.inference.models import Service
    from broker.proxy.metrics import ProxyMetrics
    from broker.proxy.settings import VerifyMode

__all__ = [
    "REASON_HEADER",
    "SEEN_CHAT_IDS",
    "SERVICE_MEMO_S",
    "VERIFIED_HEADER",
    "Verifier",
    "header_value",
    "reason_value",
]

logger = logging.getLogger(__name__)

#: Response header carrying the outcome: ``true``, ``false``, ``none`` (no chat ID) or ``off``.
VERIFIED_HEADER = "X-0G-Verified"
#: Response header with the :class:`VerificationReason` value (and the binding when verified).
REASON_HEADER = "X-0G-Verification-Reason"
#: Seconds the verifier reuses the provider's service without asking the inference broker again.
SERVICE_MEMO_S = 1.0
#: How many recent chat ids a :class:`Verifier` remembers to detect a reused one.
SEEN_CHAT_IDS = 10_000

_RETRY_REASONS = (
    VerificationReason.SIGNER_NOT_ACKNOWLEDGED,
    VerificationReason.SIGNER_MISMATCH,
    VerificationReason.NOT_VERIFIABLE,
)


def reason_value(result: VerificationResult | None) -> str:
    """``X-0G-Verification-Reason`` value: the reason, with ``; binding=<level>`` when known."""
    if result is None:
        return "off"
    return result.reason.value + (f"; binding={result.binding}" if result.binding else "")


def header_value(result: VerificationResult | None) -> str:
    """``X-0G-Verified`` value: ``off`` (mode off), ``none`` (no chat ID), ``true`` / ``false``."""
    if result is None:
        return "off"
    if result.verified is None:
        return "none"
    return "true" if result.verified else "false"


class Verifier:
    """Verifies responses of one provider.

    Args:
        inference: the user's inference broker (service lookup, fee store).
        provider: checksummed provider address.
        mode: ``off`` / ``warn`` / ``enforce``.
        client: the pooled ``httpx.AsyncClient`` used for signature fetches.
        metrics: counters to update (optional).
    """

    def __init__(
        self,
        inference: InferenceBroker,
        provider: str,
        mode: VerifyMode,
        client: httpx.AsyncClient,
        metrics: ProxyMetrics | None = None,
    ) -> None:
        self.inference = inference
        self.provider = provider
        self.mode = mode
        self.client = client
        self.metrics = metrics
        self._seen: OrderedDict[str, str | None] = OrderedDict()
        self._cached_service: tuple[Service, float] | None = None

    async def _service(self) -> Service:
        """The provider's service (the inference broker's 10-min cache), asked for at most once
        per :data:`SERVICE_MEMO_S` seconds so that most requests need no thread hop; a refresh
        (:meth:`verify` on a signer mismatch) replaces it."""
        cached = self._cached_service
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        service = await run_in_threadpool(self.inference.get_service, self.provider)
        self._cached_service = (service, now + SERVICE_MEMO_S)
        return service

    def _reused(
        self, chat_id: str | None, binding: ResponseBinding | None
    ) -> VerificationResult | None:
        """``chat_id_mismatch`` when ``chat_id`` already named an earlier response of this proxy
        (each response gets a fresh ``ZG-Res-Key``, B5: a repeated one was swapped or replayed,
        even when the two exchanges had identical bytes); else remember it (bounded by
        :data:`SEEN_CHAT_IDS`) and return ``None``. Only responses with bytes (``binding``) are
        tracked."""
        if not chat_id or binding is None or binding.response_hash is None:
            return None
        key = chat_id.lower()
        if key in self._seen:
            return VerificationResult(
                False,
                VerificationReason.CHAT_ID_MISMATCH,
                chat_id=chat_id,
                detail="this chat id already belonged to an earlier response (replayed or swapped "
                "ZG-Res-Key)",
                binding=binding.level,
            )
        self._seen[key] = binding.response_hash
        while len(self._seen) > SEEN_CHAT_IDS:
            self._seen.popitem(last=False)
        return None

    async def verify(
        self, chat_id: str | None, *, binding: ResponseBinding | None = None
    ) -> VerificationResult | None:
        """Verify one response now (signatures expire on the provider after ~20 min).

        Args:
            chat_id: the response's chat id (``ZG-Res-Key``, else its ``id``).
            binding: sha256 of the request as forwarded and of the response bytes as received
                (``None``: the signature alone is checked, ``binding="signature_only"``).

        Returns:
            ``None`` in mode ``off``; else the :class:`VerificationResult` (``verified`` None when
            there is no chat ID). Never raises for network or signature problems; a stale cached
            service is refreshed once before a mismatch is declared; a 429 of the signature
            endpoint is retried after its ``Retry-After`` (at most 10 s in all).
        """
        if self.mode == "off":
            return None
        result = self._reused(chat_id, binding)
        if result is None:
            service = await self._service()
            result = await averify_response_signature(
                service, chat_id, client=self.client, binding=binding
            )
            if result.verified is False and result.reason in _RETRY_REASONS:
                service = await run_in_threadpool(
                    self.inference.get_service, self.provider, refresh=True
                )
                self._cached_service = (service, time.monotonic() + SERVICE_MEMO_S)
                result = await averify_response_signature(
                    service, chat_id, client=self.client, binding=binding
                )
        if chat_id:
            await run_in_threadpool(
                self.inference.fee_store.record_verification,
                self.inference.address,
                self.provider,
                result,
            )
        if self.metrics is not None:
            m = self.metrics
            m.child(m.verifications, header_value(result), result.reason.value).inc()
        if result.verified is False:
            logger.warning(
                "response %s from %s not verified: %s",
                chat_id,
                self.provider,
                result.detail or result.reason.value,
            )
        return result

    async def unsigned(self, detail: str, *, record: bool = True) -> VerificationResult | None:
        """The outcome for a response the provider does not sign (e.g. an async job's completed
        poll, which carries no ``ZG-Res-Key``): ``verified=None`` (reason ``no_chat_id``) with
        ``detail``, counted in the metrics and, when ``record``, stored in the verification log.

        Returns:
            ``None`` in mode ``off``; else the :class:`VerificationResult`.
        """
        if self.mode == "off":
            return None
        result = VerificationResult(None, VerificationReason.NO_CHAT_ID, detail=detail)
        if record:
            await run_in_threadpool(
                self.inference.fee_store.record_verification,
                self.inference.address,
                self.provider,
                result,
            )
        if self.metrics is not None:
            m = self.metrics
            m.child(m.verifications, header_value(result), result.reason.value).inc()
        return result

    def refuses(self, result: VerificationResult | None) -> bool:
        """Whether mode ``enforce`` refuses a response with this ``result`` (anything but
        ``verified=True``; ``None`` results, i.e. mode off, are never refused)."""
        return self.mode == "enforce" and result is not None and result.verified is not True

    def enforce(self, result: VerificationResult | None) -> None:
        """In mode ``enforce``, raise unless ``result`` verified.

        Raises:
            VerificationRefusedError: 502 ``verification_error`` naming the reason.
        """
        if not self.refuses(result):
            return
        assert result is not None
        detail = f" ({result.detail})" if result.detail else ""
        raise VerificationRefusedError(
            f"the provider's response signature did not verify: {result.reason.value}{detail}; "
            "refused (verify mode enforce)",
            code=result.reason.value,
        )
