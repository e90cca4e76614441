"""Response-signature verification (user-broker.md §8.2; provider-gateway.md B7).

Steps: the service must be verifiable (``OpML``/``TeeML``/``ZKML``), its TEE signer acknowledged by
the contract owner, and its ``additionalInfo`` a JSON object; the signing address is chosen from
``teeSignerAddress`` / ``TargetSeparated`` / ``TargetTeeAddress`` / ``ProviderType``; then
``GET {url}/v1/proxy/signature/{chat_id}?model={model}`` (no Authorization) returns
``{"text", "signature", ...}`` and ``recover(EIP-191(text), signature)`` must be the signing address.

Improvements over SDK 0.9.0 (§13 item 11): chat ID and model are URL-encoded; HTTP failures and
malformed signatures give ``verified=False`` with a reason instead of raising; the caller may pass the
model actually used (multi-model providers); a provider may store the signature a moment after the
last byte of a stream (the ``openai`` client stops reading at ``data: [DONE]``), so the B7 "chat id not
found" answer is retried a bounded number of times (:data:`SIGNATURE_NOT_FOUND_ATTEMPTS`, linear
backoff :data:`SIGNATURE_NOT_FOUND_BACKOFF_S`: 0.5 s then 1.0 s, 1.5 s in all); no other failure is
retried.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

import httpx
from eth_account import Account
from eth_account.messages import encode_defunct

from broker.inference.service_info import is_verifiable, parse_additional_info, provider_type

if TYPE_CHECKING:
    from broker.chain.contracts import Service

__all__ = [
    "DEFAULT_SIGNATURE_TIMEOUT_S",
    "SIGNATURE_NOT_FOUND_ATTEMPTS",
    "SIGNATURE_NOT_FOUND_BACKOFF_S",
    "VerificationReason",
    "VerificationResult",
    "averify_response_signature",
    "check_service_verifiable",
    "evaluate_signature_response",
    "is_signature_not_found",
    "recover_text_signer",
    "select_signing_address",
    "signature_url",
    "verify_response_signature",
]

logger = logging.getLogger(__name__)

DEFAULT_SIGNATURE_TIMEOUT_S = 10.0
#: How many times the signature is fetched while the provider answers "chat id not found" (B7).
SIGNATURE_NOT_FOUND_ATTEMPTS = 3
#: Seconds before retry ``k`` (1-based) is ``k ×`` this: 0.5 s, 1.0 s (1.5 s in all by default).
SIGNATURE_NOT_FOUND_BACKOFF_S = 0.5
_ZERO_ADDRESS = "0x" + "0" * 40


class VerificationReason(enum.StrEnum):
    """Why a response verification came out as it did."""

    VERIFIED = "verified"
    NO_CHAT_ID = "no_chat_id"
    NOT_VERIFIABLE = "not_verifiable"
    SIGNER_NOT_ACKNOWLEDGED = "signer_not_acknowledged"
    ADDITIONAL_INFO_MISSING = "additional_info_missing"
    ADDITIONAL_INFO_INVALID = "additional_info_invalid"
    SIGNATURE_UNAVAILABLE = "signature_unavailable"
    SIGNATURE_MALFORMED = "signature_malformed"
    SIGNATURE_MISMATCH = "signature_mismatch"


@dataclass(frozen=True, slots=True)
class VerificationResult:
    """Outcome of one response verification.

    Attributes:
        verified: ``True`` signature matches; ``False`` not verified (see ``reason``); ``None``
            nothing to verify (no chat ID).
        reason: a :class:`VerificationReason`.
        signer: the expected signing address (``None`` when not reached).
        chat_id: the chat ID checked (``None`` when absent).
        detail: a human-readable explanation (SDK warning text, HTTP status, recovered address).
        recovered: the address the signature recovers to, when it could be computed.
    """

    verified: bool | None
    reason: VerificationReason
    signer: str | None = None
    chat_id: str | None = None
    detail: str = ""
    recovered: str | None = None


def select_signing_address(service: Service, info: dict[str, Any]) -> str:
    """The address whose signature §8.2 step 6 accepts.

    ``TargetSeparated is True`` and decentralized with a non-empty ``TargetTeeAddress`` →
    ``TargetTeeAddress``; every other case (centralized providers [0.8], not separated, no target
    address) → ``service.tee_signer_address``.
    """
    if info.get("TargetSeparated") is True and provider_type(info) != "centralized":
        target = info.get("TargetTeeAddress")
        if isinstance(target, str) and target:
            return target
    return service.tee_signer_address


def signature_url(service_url: str, chat_id: str, model: str) -> str:
    """``{url}/v1/proxy/signature/{chat_id}?model={model}`` with the chat ID as one URL-encoded path
    segment and the model as a URL-encoded query value (a trailing ``/`` on ``url`` is dropped)."""
    return (
        f"{service_url.rstrip('/')}/v1/proxy/signature/{quote(chat_id, safe='')}"
        f"?{urlencode({'model': model})}"
    )


def recover_text_signer(text: str, signature: str) -> str:
    """Recover the signer of EIP-191 ``personal_sign(utf8(text))`` (§8.2 step 8; vector §3, C2).

    Args:
        text: the signed text (opaque).
        signature: ``0x`` + 130 hex characters.

    Returns:
        The checksummed address.

    Raises:
        ValueError: the signature is not 65 bytes of hex or does not recover.
    """
    sig_hex = signature[2:] if signature.startswith(("0x", "0X")) else signature
    sig = bytes.fromhex(sig_hex)
    if len(sig) != 65:
        raise ValueError(f"signature is {len(sig)} bytes, expected 65")
    return Account.recover_message(encode_defunct(text=text), signature=sig)


def check_service_verifiable(service: Service, chat_id: str | None) -> VerificationResult | str:
    """Steps 2–6 of §8.2 without network access.

    Returns:
        The signing address to expect, or a final :class:`VerificationResult` (``None``/``False``)
        when verification cannot go further.
    """
    if not chat_id:
        return VerificationResult(None, VerificationReason.NO_CHAT_ID, detail="no chat ID")
    if not is_verifiable(service.verifiability):
        return VerificationResult(
            False, VerificationReason.NOT_VERIFIABLE, chat_id=chat_id,
            detail="this service is not verifiable",
        )  # fmt: skip
    if not service.tee_signer_acknowledged:
        return VerificationResult(
            False, VerificationReason.SIGNER_NOT_ACKNOWLEDGED, chat_id=chat_id,
            detail="TEE Signer is not acknowledged",
        )  # fmt: skip
    if not service.additional_info:
        return VerificationResult(
            False, VerificationReason.ADDITIONAL_INFO_MISSING, chat_id=chat_id,
            detail="Service additionalInfo does not exist",
        )  # fmt: skip
    info = parse_additional_info(service.additional_info)
    if info is None:
        return VerificationResult(
            False, VerificationReason.ADDITIONAL_INFO_INVALID, chat_id=chat_id,
            detail="Failed to parse additionalInfo as JSON",
        )  # fmt: skip
    signer = select_signing_address(service, info)
    if not signer or signer.lower() == _ZERO_ADDRESS:
        return VerificationResult(
            False, VerificationReason.SIGNER_NOT_ACKNOWLEDGED, signer=signer or None,
            chat_id=chat_id, detail="no TEE signer address registered",
        )  # fmt: skip
    return signer


def evaluate_signature_response(
    response: httpx.Response | None, signer: str, chat_id: str, error: str | None = None
) -> VerificationResult:
    """Turn the signature endpoint's answer into a result (§8.2 steps 7–8); never raises.

    Args:
        response: the HTTP response, or ``None`` when the request failed (``error`` says why).
        signer: the expected signing address.
        chat_id: the chat ID.
        error: transport error text when ``response`` is ``None``.
    """
    unavailable = VerificationReason.SIGNATURE_UNAVAILABLE
    if response is None:
        return VerificationResult(
            False, unavailable, signer, chat_id, f"getting signature error: {error}"
        )
    if not response.is_success:
        snippet = response.text[:200] if response.content else ""
        return VerificationResult(
            False, unavailable, signer, chat_id,
            f"getting signature error: HTTP {response.status_code} {snippet}".rstrip(),
        )  # fmt: skip
    try:
        body = response.json()
    except ValueError:
        return VerificationResult(
            False, unavailable, signer, chat_id, "signature response is not JSON"
        )
    text = body.get("text") if isinstance(body, dict) else None
    signature = body.get("signature") if isinstance(body, dict) else None
    if not isinstance(text, str) or not isinstance(signature, str):
        return VerificationResult(
            False, unavailable, signer, chat_id, "signature response lacks text or signature"
        )
    try:
        recovered = recover_text_signer(text, signature)
    except Exception as exc:  # noqa: BLE001 - malformed signature of any kind
        return VerificationResult(
            False,
            VerificationReason.SIGNATURE_MALFORMED,
            signer,
            chat_id,
            f"malformed signature: {exc}",
        )
    if recovered.lower() != signer.lower():
        return VerificationResult(
            False, VerificationReason.SIGNATURE_MISMATCH, signer, chat_id,
            f"signature recovers to {recovered}, expected {signer}", recovered,
        )  # fmt: skip
    return VerificationResult(True, VerificationReason.VERIFIED, signer, chat_id, "", recovered)


def is_signature_not_found(response: httpx.Response | None) -> bool:
    """Whether ``response`` is the provider's "not stored (yet) or expired" answer of B7: a 4xx whose
    body says ``Chat id not found`` / ``chat_id_not_found`` (the reference answers 400
    ``{"error":"prepare HTTP request: Chat id not found or expired, chat_id_not_found"}``). Other
    4xx (e.g. an unknown route's 404), 5xx and transport errors are not.
    """
    if response is None or not 400 <= response.status_code < 500:
        return False
    text = response.text.lower() if response.content else ""
    return "chat_id_not_found" in text or "chat id not found" in text


def _retry_delays(attempts: int, backoff: float) -> list[float]:
    """Seconds to wait before each retry: ``backoff × k`` for k = 1 … attempts − 1."""
    if attempts < 1:
        raise ValueError(f"not_found_attempts must be >= 1, got {attempts}")
    if backoff < 0:
        raise ValueError(f"not_found_backoff must be >= 0 seconds, got {backoff}")
    return [backoff * k for k in range(1, attempts)]


_SIGNATURE_HEADERS = {"Content-Type": "application/json"}


def _next_delay(response: httpx.Response, delay: float | None, chat_id: str | None) -> float | None:
    """The retry policy shared by the sync and async verifiers: seconds to wait before fetching
    again, or ``None`` when ``response`` is final (not a "not found" answer, or no retry left)."""
    if delay is None or not is_signature_not_found(response):
        return None
    logger.debug("signature of %s not stored yet; retrying in %.2f s", chat_id, delay)
    return delay


def _transport_failure(
    exc: httpx.HTTPError, signer: str, chat_id: str | None
) -> VerificationResult:
    """``verified=False`` for a signature fetch that failed below HTTP (connect, timeout, …)."""
    return evaluate_signature_response(None, signer, chat_id, type(exc).__name__ + f": {exc}")


def _prepare_signature_request(
    service: Service, chat_id: str | None, model: str | None
) -> VerificationResult | tuple[str, str]:
    """The non-I/O part shared by the sync and async verifiers: a final result, or
    ``(signing address, signature URL)``."""
    checked = check_service_verifiable(service, chat_id)
    if isinstance(checked, VerificationResult):
        return checked
    assert chat_id is not None
    return checked, signature_url(
        service.url, chat_id, model if model is not None else service.model
    )


def verify_response_signature(
    service: Service,
    chat_id: str | None,
    *,
    client: httpx.Client | None = None,
    model: str | None = None,
    timeout: float = DEFAULT_SIGNATURE_TIMEOUT_S,
    not_found_attempts: int = SIGNATURE_NOT_FOUND_ATTEMPTS,
    not_found_backoff: float = SIGNATURE_NOT_FOUND_BACKOFF_S,
) -> VerificationResult:
    """Verify a response's TEE signature (§8.2), synchronously. Never raises for network, HTTP or
    signature-format problems (those give ``verified=False``).

    While the provider answers "chat id not found" (:func:`is_signature_not_found`: it may store the
    signature a moment after the stream's last byte) the fetch is repeated, at most
    ``not_found_attempts`` times in all, sleeping ``k × not_found_backoff`` seconds before retry
    ``k``; any other answer or failure ends at once.

    Args:
        service: the provider's on-chain :class:`Service` (fresh enough to have the current signer).
        chat_id: from :mod:`broker.inference.chat_id`; empty → ``verified=None``.
        client: an ``httpx.Client`` to reuse (default: a temporary one).
        model: the ``model`` query value (default: the on-chain ``service.model``, as the SDK does).
        timeout: seconds for each signature fetch.
        not_found_attempts: fetches at most while the answer is "not found" (≥ 1; 1 = no retry).
        not_found_backoff: seconds; retry ``k`` waits ``k × not_found_backoff``.

    Returns:
        A :class:`VerificationResult`.

    Raises:
        ValueError: ``not_found_attempts`` < 1 or ``not_found_backoff`` < 0.
    """
    delays = _retry_delays(not_found_attempts, not_found_backoff)
    prepared = _prepare_signature_request(service, chat_id, model)
    if isinstance(prepared, VerificationResult):
        return prepared
    signer, url = prepared
    own = client is None
    http = client or httpx.Client(timeout=timeout)
    try:
        for delay in [*delays, None]:
            response = http.get(url, headers=_SIGNATURE_HEADERS, timeout=timeout)
            wait = _next_delay(response, delay, chat_id)
            if wait is None:
                break
            time.sleep(wait)
    except httpx.HTTPError as exc:
        return _transport_failure(exc, signer, chat_id)
    finally:
        if own:
            http.close()
    return evaluate_signature_response(response, signer, chat_id)


async def averify_response_signature(
    service: Service,
    chat_id: str | None,
    *,
    client: httpx.AsyncClient | None = None,
    model: str | None = None,
    timeout: float = DEFAULT_SIGNATURE_TIMEOUT_S,
    not_found_attempts: int = SIGNATURE_NOT_FOUND_ATTEMPTS,
    not_found_backoff: float = SIGNATURE_NOT_FOUND_BACKOFF_S,
) -> VerificationResult:
    """Async twin of :func:`verify_response_signature` (``httpx.AsyncClient``, ``asyncio.sleep``
    between "not found" retries); same arguments and contract."""
    delays = _retry_delays(not_found_attempts, not_found_backoff)
    prepared = _prepare_signature_request(service, chat_id, model)
    if isinstance(prepared, VerificationResult):
        return prepared
    signer, url = prepared
    own = client is None
    http = client or httpx.AsyncClient(timeout=timeout)
    try:
        for delay in [*delays, None]:
            response = await http.get(url, headers=_SIGNATURE_HEADERS, timeout=timeout)
            wait = _next_delay(response, delay, chat_id)
            if wait is None:
                break
            await asyncio.sleep(wait)
    except httpx.HTTPError as exc:
        return _transport_failure(exc, signer, chat_id)
    finally:
        if own:
            await http.aclose()
    return evaluate_signature_response(response, signer, chat_id)
