"""Response verification in the proxy: mode ``off | warn | enforce`` (``user-broker.md`` §8).

``warn`` (default) and ``enforce`` fetch the TEE signature of every response with a chat ID
(``ZG-Res-Key``, else the body ``id``) and check it with
:func:`broker.inference.response_signature.averify_response_signature`, bound to this exchange: the
signed text must name sha256 of the request as forwarded and of the response bytes as received
(:class:`~broker.inference.response_signature.ResponseBinding`). A chat id that already belonged to
an earlier response of this proxy (a swapped ``ZG-Res-Key``) is refused as ``chat_id_mismatch``
without fetching. When the gateway sent the signature in the ``ZG-Res-Signature`` header (ours does
for non-streamed answers) and both hashes are known, the signature is checked over the text rebuilt
from this exchange's own hashes with no fetch at all
(:func:`~broker.inference.response_signature.verify_signature_header`); a header that does not
verify is ignored and the signature fetched, the endpoint being authoritative. The outcome goes
to the ``X-0G-Verified`` header (``X-0G-Verification-Reason`` says why), the metrics and the fee
store's verification log. ``enforce`` refuses a response that does not verify
(:class:`~broker.proxy.errors.VerificationRefusedError`, 502) before any byte of it reaches the
client.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from typing import TYPE_CHECKING

from broker.inference.response_signature import (
    RESPONSE_SIGNATURE_HEADER,
    AsyncSignatureClient,
    ResponseBinding,
    VerificationReason,
    VerificationResult,
    averify_response_signature,
    check_service_verifiable,
    verify_signature_header,
)
from broker.proxy.errors import VerificationRefusedError
from broker.proxy.service_memo import SERVICE_MEMO_S, ServiceMemo

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
        client: what the signature fetches use (serve passes its
            :class:`~broker.proxy.upstream.SignatureClient`; an ``httpx.AsyncClient`` works too).
        metrics: counters to update (optional).
    """

    def __init__(
        self,
        inference: InferenceBroker,
        provider: str,
        mode: VerifyMode,
        client: AsyncSignatureClient,
        metrics: ProxyMetrics | None = None,
    ) -> None:
        self.inference = inference
        self.provider = provider
        self.mode = mode
        self.client = client
        self.metrics = metrics
        self._seen: OrderedDict[str, str | None] = OrderedDict()
        self._services = ServiceMemo(inference, provider)
        self._signer: tuple[Service, str | None] | None = None

    async def _service(self) -> Service:
        """The provider's service (:class:`~broker.proxy.service_memo.ServiceMemo`: at most one
        ask per :data:`SERVICE_MEMO_S` seconds); a signer mismatch refreshes it (:meth:`verify`)."""
        return await self._services.get()

    def _signer_of(self, service: Service) -> str | None:
        """The signing address a header must recover to (``None``: the service cannot verify;
        the fetch path then gives the reason), computed once per service object."""
        memo = self._signer
        if memo is not None and memo[0] is service:
            return memo[1]
        checked = check_service_verifiable(service, "-")
        signer = checked if isinstance(checked, str) else None
        self._signer = (service, signer)
        return signer

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
        self,
        chat_id: str | None,
        *,
        binding: ResponseBinding | None = None,
        header_signature: str | None = None,
        record: bool = True,
    ) -> VerificationResult | None:
        """Verify one response now (signatures expire on the provider after ~20 min).

        Args:
            chat_id: the response's chat id (``ZG-Res-Key``, else its ``id``).
            binding: sha256 of the request as forwarded and of the response bytes as received
                (``None``: the signature alone is checked, ``binding="signature_only"``).
            header_signature: the response's ``ZG-Res-Signature`` header, if any: checked first
                over this exchange's hashes (no fetch); fetched as usual when absent or invalid.
            record: store the result in the fee store's verification log now; ``False`` when the
                caller stores it with the request's fee in one transaction
                (:meth:`Billing.record <broker.proxy.billing.Billing.record>`).

        Returns:
            ``None`` in mode ``off``; else the :class:`VerificationResult` (``verified`` None when
            there is no chat ID). Never raises for network or signature problems; a stale cached
            service is refreshed once before a mismatch is declared; a 429 of the signature
            endpoint is retried after its ``Retry-After`` (at most 10 s in all).
        """
        if self.mode == "off":
            return None
        result = self._reused(chat_id, binding)
        if result is None and header_signature and chat_id:
            signer = self._signer_of(await self._service())
            if signer is not None:
                result = verify_signature_header(signer, chat_id, header_signature, binding)
                if result is None:
                    logger.info(
                        "%s header of %s from %s does not verify; fetching the signature",
                        RESPONSE_SIGNATURE_HEADER,
                        chat_id,
                        self.provider,
                    )
        if result is None:
            service = await self._service()
            result = await averify_response_signature(
                service, chat_id, client=self.client, binding=binding
            )
            if result.verified is False and result.reason in _RETRY_REASONS:
                service = await self._services.refresh()
                result = await averify_response_signature(
                    service, chat_id, client=self.client, binding=binding
                )
        if chat_id and record:
            await self.inference.fee_store.arecord_verification(
                self.inference.address, self.provider, result
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
            await self.inference.fee_store.arecord_verification(
                self.inference.address, self.provider, result
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
