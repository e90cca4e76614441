"""Response verification in the proxy: mode ``off | warn | enforce`` (``user-broker.md`` §8).

``warn`` (default) and ``enforce`` fetch the TEE signature of every response with a chat ID
(``ZG-Res-Key``, else the body ``id``) and check it with
:func:`broker.inference.response_signature.averify_response_signature`; the outcome goes to the
``X-0G-Verified`` header, the metrics and the fee store's verification log. ``enforce`` refuses a
response that does not verify (:class:`~broker.proxy.errors.VerificationRefusedError`, 502).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import httpx
from starlette.concurrency import run_in_threadpool

from broker.inference.response_signature import (
    VerificationReason,
    VerificationResult,
    averify_response_signature,
)
from broker.proxy.errors import VerificationRefusedError

if TYPE_CHECKING:
    from broker.inference.broker import InferenceBroker
    from broker.proxy.metrics import ProxyMetrics
    from broker.proxy.settings import VerifyMode

__all__ = ["VERIFIED_HEADER", "Verifier", "header_value"]

logger = logging.getLogger(__name__)

#: Response header carrying the outcome: ``true``, ``false``, ``none`` (no chat ID) or ``off``.
VERIFIED_HEADER = "X-0G-Verified"

_RETRY_REASONS = (VerificationReason.SIGNER_NOT_ACKNOWLEDGED, VerificationReason.SIGNATURE_MISMATCH,
                  VerificationReason.NOT_VERIFIABLE)


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

    def __init__(self, inference: InferenceBroker, provider: str, mode: VerifyMode,
                 client: httpx.AsyncClient, metrics: ProxyMetrics | None = None) -> None:
        self.inference = inference
        self.provider = provider
        self.mode = mode
        self.client = client
        self.metrics = metrics

    async def verify(self, chat_id: str | None) -> VerificationResult | None:
        """Verify one response now (signatures expire on the provider after ~20 min).

        Returns:
            ``None`` in mode ``off``; else the :class:`VerificationResult` (``verified`` None when
            there is no chat ID). Never raises for network or signature problems; a stale cached
            service is refreshed once before a mismatch is declared.
        """
        if self.mode == "off":
            return None
        service = await run_in_threadpool(self.inference.get_service, self.provider)
        result = await averify_response_signature(service, chat_id, client=self.client)
        if result.verified is False and result.reason in _RETRY_REASONS:
            service = await run_in_threadpool(self.inference.get_service, self.provider,
                                              refresh=True)
            result = await averify_response_signature(service, chat_id, client=self.client)
        if chat_id:
            await run_in_threadpool(self.inference.fee_store.record_verification,
                                    self.inference.address, self.provider, result)
        if self.metrics is not None:
            self.metrics.verifications.labels(result=header_value(result),
                                              reason=result.reason.value).inc()
        if result.verified is False:
            logger.warning("response %s from %s not verified: %s", chat_id, self.provider,
                           result.detail or result.reason.value)
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
            await run_in_threadpool(self.inference.fee_store.record_verification,
                                    self.inference.address, self.provider, result)
        if self.metrics is not None:
            self.metrics.verifications.labels(result=header_value(result),
                                              reason=result.reason.value).inc()
        return result

    def enforce(self, result: VerificationResult | None) -> None:
        """In mode ``enforce``, raise unless ``result`` verified.

        Raises:
            VerificationRefusedError: 502 ``verification_error`` naming the reason.
        """
        if self.mode != "enforce" or result is None or result.verified is True:
            return
        detail = f" ({result.detail})" if result.detail else ""
        raise VerificationRefusedError(
            f"the provider's response signature did not verify: {result.reason.value}{detail}; "
            "refused (verify mode enforce)", code=result.reason.value)
