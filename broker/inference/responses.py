"""Response processing for the inference broker: fee accounting and response-signature verification
(user-broker.md §7.1–§7.2, §8; §13 items 3, 11).

:class:`ResponseProcessor` adds the fee of a response to the fee store (on-chain prices of the
cached service), verifies the TEE signature of its chat ID
(:func:`~broker.inference.response_signature.verify_response_signature`), refreshes a stale cached
service once before declaring a signer mismatch, and records the result. It never raises for HTTP or
signature problems. Addresses passed in are already checksummed by the facade
(:class:`~broker.inference.broker.InferenceBroker`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from broker.inference.errors import UnknownServiceTypeError, UsageError
from broker.inference.fee_store import FeeStore
from broker.inference.fees import fee_for_content
from broker.inference.models import Service
from broker.inference.response_signature import (
    ResponseBinding,
    VerificationReason,
    VerificationResult,
    verify_response_signature,
)
from broker.inference.services import ServiceDirectory

__all__ = ["SIGNATURE_RETRY_REASONS", "ResponseProcessor"]

logger = logging.getLogger(__name__)

#: Verification failures that may come from a stale cached service: retried once after a refresh.
SIGNATURE_RETRY_REASONS = (
    VerificationReason.SIGNER_NOT_ACKNOWLEDGED,
    VerificationReason.SIGNER_MISMATCH,
    VerificationReason.NOT_VERIFIABLE,
)


class ResponseProcessor:
    """``processResponse`` (§7.1) for one user.

    Args:
        address: the user's checksummed address (fee store key).
        services: the broker's :class:`~broker.inference.services.ServiceDirectory`.
        fee_store: ``() -> FeeStore`` (the broker's store, opened on first use).
        http: the ``httpx.Client`` used for the signature fetch.
    """

    def __init__(
        self,
        address: str,
        services: ServiceDirectory,
        fee_store: Callable[[], FeeStore],
        http: httpx.Client,
    ) -> None:
        self._address = address
        self._services = services
        self._fee_store = fee_store
        self._http = http

    def _record_fee(self, provider: str, service: Service, content: Any) -> None:
        try:
            fee = fee_for_content(
                service.service_type, content, service.input_price, service.output_price
            )
        except (UnknownServiceTypeError, UsageError) as exc:
            logger.warning("fee not recorded for %s: %s", provider, exc)
        else:
            self._fee_store().add_fee(self._address, provider, fee)

    def process(
        self,
        provider: str,
        chat_id: str | None,
        content: str | bytes | Mapping[str, Any] | None,
        model: str | None,
        binding: ResponseBinding | None = None,
    ) -> VerificationResult:
        """Account the fee of ``content`` (neuron) and verify the signature of ``chat_id``, bound
        to ``binding`` when given; see
        :meth:`~broker.inference.broker.InferenceBroker.process_response_detailed`.

        Raises:
            UnknownProviderError, RPCError (service lookup only).
        """
        service, cached = self._services.cached(provider)
        if content:
            self._record_fee(provider, service, content)
        result = verify_response_signature(
            service, chat_id, client=self._http, model=model, binding=binding
        )
        if result.verified is False and cached and result.reason in SIGNATURE_RETRY_REASONS:
            service = self._services.fetch(provider)
            result = verify_response_signature(
                service, chat_id, client=self._http, model=model, binding=binding
            )
        if chat_id:
            self._fee_store().record_verification(self._address, provider, result)
        if result.verified is False:
            logger.warning(
                "response %s from %s not verified: %s",
                chat_id,
                provider,
                result.detail or result.reason.value,
            )
        return result
