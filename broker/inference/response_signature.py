"""Response-signature verification (user-broker.md §8.2; provider-gateway.md B7).

Steps: the service must be verifiable (``OpML``/``TeeML``/``ZKML``), its TEE signer acknowledged by
the contract owner, and its ``additionalInfo`` a JSON object; the signing address is chosen from
``teeSignerAddress`` / ``TargetSeparated`` / ``TargetTeeAddress`` / ``ProviderType``; then
``GET {url}/v1/proxy/signature/{chat_id}?model={model}`` (no Authorization) returns
``{"text", "signature", ...}`` and ``recover(EIP-191(text), signature)`` must be the signing
address.

Improvements over SDK 0.9.0 (§13 item 11): chat ID and model are URL-encoded; HTTP failures and
malformed signatures give ``verified=False`` with a reason instead of raising; the caller may pass
the model actually used (multi-model providers); a provider may store the signature a moment after
the last byte of a stream (the ``openai`` client stops reading at ``data: [DONE]``), so the B7
"chat id not found" answer is retried a bounded number of times
(:data:`SIGNATURE_NOT_FOUND_ATTEMPTS`, linear backoff :data:`SIGNATURE_NOT_FOUND_BACKOFF_S`: 0.5 s
then 1.0 s, 1.5 s in all); no other failure is retried.

Binding (issue: "verification must check the bytes that were received"). The SDK only checks that
``text`` was signed by the TEE signer, so a replayed or swapped signature verifies for any response.
When the caller passes a :class:`ResponseBinding` (the hex SHA-256 of the request as forwarded,
:mod:`broker.wire.forwarded_request`, and of the response bytes as received), the signed text
(:mod:`broker.wire.signed_text`) must also name exactly these hashes; the result's ``binding`` says
what was checked: ``"full"`` (both hashes), ``"response_only"`` (the request hash could not be
reproduced for this route; the response hash is never skipped when the bytes are known) or
``"signature_only"`` (no bytes given: the SDK's check, which proves nothing about *this* response).
A ``429``/``503`` from the signature endpoint is retried after its ``Retry-After`` (at most
:data:`RATE_LIMIT_BUDGET_S` seconds of waiting in all).

Hostile answers. The chat id comes from the response (header or body), so a relay or provider
chooses it: an id that is a dot segment (``.``, ``..``) would be resolved away by the HTTP client
and send the fetch to another route (``.../signature/..`` is ``/v1/proxy``), and an endless id an
endless URL; such ids are refused (``chat_id_invalid``) before any request
(:func:`chat_id_problem`). The signature endpoint's answer is read at most
:data:`SIGNATURE_MAX_BYTES` (after any content decoding): a larger one is
``signature_unavailable``, never buffered whole.

Signature header. Our gateway also sends the B7 signature of a non-streamed answer in the
``ZG-Res-Signature`` response header (:data:`RESPONSE_SIGNATURE_HEADER`, ``0x`` + 130 hex). The
user side never trusts the text a header could name: :func:`verify_signature_header` rebuilds the
text from its *own* request and response hashes (binding ``full`` only) and recovers the signer, so
a valid header proves the same as a fetched signature with a full binding, without the round trip.
A header that does not recover to the expected signer (forged, from another response, signed by
another key, malformed) proves nothing either way: the caller then fetches the signature (the
endpoint stays authoritative); an absent header (real 0G gateways) is the fetch as before.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import logging
import re
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlencode

import httpx
from coincurve import PublicKey
from eth_utils import keccak, to_checksum_address

from broker._bounded_read import BoundedBody, BoundedReadError, read_bounded
from broker.inference.errors import InvalidChatIdError
from broker.inference.service_info import is_verifiable, parse_additional_info, provider_type
from broker.wire.eth_signature import is_low_s
from broker.wire.signed_text import SignedTextError, compare_signed_text, sha256_hex

if TYPE_CHECKING:
    from broker.chain.contracts import Service

__all__ = [
    "BINDING_FULL",
    "BINDING_RESPONSE_ONLY",
    "BINDING_SIGNATURE_ONLY",
    "CHAT_ID_MAX_CHARS",
    "DEFAULT_SIGNATURE_TIMEOUT_S",
    "RATE_LIMIT_BUDGET_S",
    "RESPONSE_SIGNATURE_HEADER",
    "SIGNATURE_MAX_BYTES",
    "SIGNATURE_NOT_FOUND_ATTEMPTS",
    "SIGNATURE_NOT_FOUND_BACKOFF_S",
    "AsyncSignatureClient",
    "ResponseBinding",
    "VerificationReason",
    "VerificationResult",
    "averify_response_signature",
    "chat_id_problem",
    "check_service_verifiable",
    "evaluate_signature_response",
    "is_signature_not_found",
    "recover_text_signer",
    "retry_after_seconds",
    "select_signing_address",
    "signature_url",
    "verify_response_signature",
    "verify_signature_header",
]

logger = logging.getLogger(__name__)

DEFAULT_SIGNATURE_TIMEOUT_S = 10.0
#: How many times the signature is fetched while the provider answers "chat id not found" (B7).
SIGNATURE_NOT_FOUND_ATTEMPTS = 3
#: Seconds before retry ``k`` (1-based) is ``k ×`` this: 0.5 s, 1.0 s (1.5 s in all by default).
SIGNATURE_NOT_FOUND_BACKOFF_S = 0.5
#: Most seconds spent waiting on ``Retry-After`` of a rate-limited (429/503) signature endpoint.
RATE_LIMIT_BUDGET_S = 10.0
#: ``VerificationResult.binding``: both hashes of the signed text matched the local bytes.
BINDING_FULL = "full"
#: Only the response hash was compared (the request as forwarded could not be reproduced).
BINDING_RESPONSE_ONLY = "response_only"
#: Only the signature over the text was checked (no bytes given: the SDK's behaviour).
BINDING_SIGNATURE_ONLY = "signature_only"
_ZERO_ADDRESS = "0x" + "0" * 40
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})*")
#: Response header with the B7 signature of a non-streamed answer (our gateway; not the 0G one).
RESPONSE_SIGNATURE_HEADER = "ZG-Res-Signature"
#: Longest chat id put in a signature URL (characters; real ids are UUID-sized, under 100).
CHAT_ID_MAX_CHARS = 512
#: Most bytes read of a signature endpoint's answer (a B7 answer is under 1 KB).
SIGNATURE_MAX_BYTES = 64 * 1024


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
    #: the signature recovers to another address than the acknowledged TEE signer
    SIGNER_MISMATCH = "signer_mismatch"
    SIGNATURE_MISMATCH = "signer_mismatch"  # former name, same member
    #: the signed text is not ``<sha256>:<sha256>`` (B7), so it binds nothing
    SIGNED_TEXT_MALFORMED = "signed_text_malformed"
    #: the signed response hash is not the hash of the bytes received
    RESPONSE_HASH_MISMATCH = "response_hash_mismatch"
    #: the signed request hash is not the hash of the request as forwarded
    REQUEST_HASH_MISMATCH = "request_hash_mismatch"
    #: the chat id is not this response's (e.g. one already used by an earlier response)
    CHAT_ID_MISMATCH = "chat_id_mismatch"
    #: the chat id cannot name a signature URL (a dot segment, or too long): nothing was fetched
    CHAT_ID_INVALID = "chat_id_invalid"


@dataclass(frozen=True, slots=True)
class ResponseBinding:
    """The local hashes a signed text must name (lowercase hex SHA-256).

    Attributes:
        response_hash: of the response bytes exactly as received (streams: the whole raw stream;
            not decompressed); ``None`` when the caller does not have them.
        request_hash: of the request body as the gateway forwarded it; ``None`` when it cannot be
            reproduced for the route (the result then says ``binding="response_only"``).
    """

    response_hash: str | None = None
    request_hash: str | None = None

    @classmethod
    def of(
        cls, *, request_body: bytes | None = None, response_body: bytes | None = None
    ) -> ResponseBinding:
        """Hash the given bytes (``None`` stays ``None``)."""
        return cls(
            None if response_body is None else sha256_hex(response_body),
            None if request_body is None else sha256_hex(request_body),
        )

    @property
    def level(self) -> str:
        """What a match proves: :data:`BINDING_FULL`, :data:`BINDING_RESPONSE_ONLY` or
        :data:`BINDING_SIGNATURE_ONLY`."""
        if self.response_hash is None:
            return BINDING_SIGNATURE_ONLY
        return BINDING_FULL if self.request_hash is not None else BINDING_RESPONSE_ONLY


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
        binding: what the verdict covers: ``"full"`` (signature, request and response hashes),
            ``"response_only"`` (signature and response hash), ``"signature_only"`` (the SDK's
            check: the text was signed, nothing ties it to this response); ``None`` when the
            signature was not reached.
        signed_text: the text the provider signed (when fetched).
    """

    verified: bool | None
    reason: VerificationReason
    signer: str | None = None
    chat_id: str | None = None
    detail: str = ""
    recovered: str | None = None
    binding: str | None = None
    signed_text: str | None = None


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


def chat_id_problem(chat_id: str) -> str | None:
    """Why ``chat_id`` cannot name a signature URL, or ``None`` when it can.

    Percent-encoding keeps ``/``, ``?``, ``#`` and the like inside one path segment, but a segment
    that *is* ``.`` or ``..`` is resolved by every HTTP client (RFC 3986 §5.2.4), so
    ``.../signature/..`` would fetch ``/v1/proxy`` instead; an id longer than
    :data:`CHAT_ID_MAX_CHARS` characters, or with control characters (a body ``id`` may hold line
    breaks that would forge log lines), is no provider's.

    Args:
        chat_id: the chat id as extracted from the response.
    Returns:
        a one-line reason, or ``None``.
    """
    if chat_id in (".", ".."):
        return f"chat id {chat_id!r} is a dot segment: it would not name the signature endpoint"
    if len(chat_id) > CHAT_ID_MAX_CHARS:
        return f"chat id is {len(chat_id)} characters, more than {CHAT_ID_MAX_CHARS}"
    if not chat_id.isprintable():
        return "chat id has control characters"
    return None


def signature_url(service_url: str, chat_id: str, model: str) -> str:
    """``{url}/v1/proxy/signature/{chat_id}?model={model}`` with the chat ID as one URL-encoded path
    segment and the model as a URL-encoded query value (a trailing ``/`` on ``url`` is dropped).

    Raises:
        InvalidChatIdError: ``chat_id`` is ``.`` or ``..`` or too long (:func:`chat_id_problem`).
    """
    problem = chat_id_problem(chat_id)
    if problem is not None:
        raise InvalidChatIdError(problem)
    return (
        f"{service_url.rstrip('/')}/v1/proxy/signature/{quote(chat_id, safe='')}"
        f"?{urlencode({'model': model})}"
    )


def _recover(text: str, signature: str) -> bytes:
    """The 20-byte address that signed EIP-191 ``personal_sign(utf8(text))`` (libsecp256k1
    through coincurve: about a quarter of the CPU of ``Account.recover_message``).

    Raises:
        ValueError: not 65 bytes of hex, a ``v`` other than 0/1/27/28, a high ``s``
            (:func:`broker.wire.eth_signature.is_low_s`), or no recoverable key.
    """
    sig_hex = signature[2:] if signature.startswith(("0x", "0X")) else signature
    if not _HEX.fullmatch(sig_hex):  # bytes.fromhex would skip whitespace inside
        raise ValueError("signature is not hex")
    sig = bytes.fromhex(sig_hex)
    if len(sig) != 65:
        raise ValueError(f"signature is {len(sig)} bytes, expected 65")
    v = sig[64] - 27 if sig[64] >= 27 else sig[64]
    if v not in (0, 1):
        raise ValueError(f"signature v is {sig[64]}, expected 27 or 28")
    if not is_low_s(sig):
        raise ValueError("signature is not canonical (s above n/2: a malleated signature)")
    message = text.encode("utf-8")
    digest = keccak(b"\x19Ethereum Signed Message:\n" + str(len(message)).encode() + message)
    try:
        key = PublicKey.from_signature_and_message(sig[:64] + bytes([v]), digest, hasher=None)
    except Exception as exc:  # noqa: BLE001 - libsecp256k1 refuses bad points or scalars
        raise ValueError(f"signature does not recover: {exc}") from None
    return keccak(key.format(compressed=False)[1:])[-20:]


@functools.lru_cache(maxsize=64)
def _checksummed(address: bytes) -> str:
    """The checksummed form of a 20-byte address (one keccak; a provider's TEE signer recurs on
    every response, so it is remembered)."""
    return to_checksum_address(address)


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
    return to_checksum_address(_recover(text, signature))


def verify_signature_header(
    signer: str, chat_id: str, signature: str | None, binding: ResponseBinding | None
) -> VerificationResult | None:
    """Verify a response from its ``ZG-Res-Signature`` header, without any fetch.

    The text is built from the caller's own hashes (``"<request sha256>:<response sha256>"``,
    :mod:`broker.wire.signed_text`), never taken from the wire, so a header that recovers to
    ``signer`` proves that the TEE signer signed exactly this exchange.

    Args:
        signer: the acknowledged signing address (:func:`check_service_verifiable`).
        chat_id: the response's chat id (kept in the result).
        signature: the header's value (``0x`` + 130 hex), or ``None`` when absent.
        binding: the local hashes; both are needed (``full``), else the header is not used.

    Returns:
        ``verified=True`` with ``binding="full"`` when the header recovers to ``signer``;
        ``None`` when there is no usable header (absent, no full binding, malformed, another
        signer, a chat id :func:`chat_id_problem` refuses): the caller then fetches the
        signature (the endpoint is authoritative).
        Never raises.
    """
    if not signature or binding is None or binding.level != BINDING_FULL:
        return None
    if chat_id_problem(chat_id) is not None:  # the fetch path refuses it, naming why
        return None
    text = f"{binding.request_hash}:{binding.response_hash}"
    try:
        recovered = _recover(text, signature.strip())
    except ValueError:
        return None
    if "0x" + recovered.hex() != signer.lower():
        return None
    address = _checksummed(recovered)
    return VerificationResult(
        True,
        VerificationReason.VERIFIED,
        signer,
        chat_id,
        f"signature from the {RESPONSE_SIGNATURE_HEADER} header",
        address,
        BINDING_FULL,
        text,
    )


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


def _check_binding(
    text: str, signer: str, chat_id: str, recovered: str, binding: ResponseBinding | None
) -> VerificationResult:
    """The verdict once the signature recovered to ``signer``: compare the signed hashes."""
    level = binding.level if binding is not None else BINDING_SIGNATURE_ONLY
    if binding is None or binding.response_hash is None:
        return VerificationResult(
            True,
            VerificationReason.VERIFIED,
            signer,
            chat_id,
            "signature only: no response bytes to compare",
            recovered,
            level,
            text,
        )
    try:
        match = compare_signed_text(
            text, response_hash=binding.response_hash, request_hash=binding.request_hash
        )
    except SignedTextError as exc:
        return VerificationResult(
            False,
            VerificationReason.SIGNED_TEXT_MALFORMED,
            signer,
            chat_id,
            str(exc),
            recovered,
            level,
            text,
        )
    if not match.response_matches:
        extra = "" if match.request_matches is not False else "; the request hash differs too"
        return VerificationResult(
            False,
            VerificationReason.RESPONSE_HASH_MISMATCH,
            signer,
            chat_id,
            f"the signed response hash is not sha256 of the bytes received{extra}",
            recovered,
            level,
            text,
        )
    if match.request_matches is False:
        return VerificationResult(
            False,
            VerificationReason.REQUEST_HASH_MISMATCH,
            signer,
            chat_id,
            "the signed request hash is not sha256 of the request as forwarded",
            recovered,
            level,
            text,
        )
    detail = (
        ""
        if level == BINDING_FULL
        else "response bytes checked; the request as forwarded could not be reproduced"
    )
    return VerificationResult(
        True, VerificationReason.VERIFIED, signer, chat_id, detail, recovered, level, text
    )


def evaluate_signature_response(
    response: httpx.Response | None,
    signer: str,
    chat_id: str,
    error: str | None = None,
    binding: ResponseBinding | None = None,
) -> VerificationResult:
    """Turn the signature endpoint's answer into a result (§8.2 steps 7–8, then the binding);
    never raises.

    Args:
        response: the HTTP response, or ``None`` when the request failed (``error`` says why).
        signer: the expected signing address.
        chat_id: the chat ID.
        error: transport error text when ``response`` is ``None``.
        binding: the local hashes the signed text must name (``None``: signature only).
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
    except (ValueError, RecursionError):  # RecursionError: nested too deeply to parse
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
            signed_text=text,
        )
    if recovered.lower() != signer.lower():
        return VerificationResult(
            False, VerificationReason.SIGNER_MISMATCH, signer, chat_id,
            f"signature recovers to {recovered}, expected {signer}", recovered,
            signed_text=text,
        )  # fmt: skip
    return _check_binding(text, signer, chat_id, recovered, binding)


def is_signature_not_found(response: httpx.Response | None) -> bool:
    """Whether ``response`` is the provider's "not stored (yet) or expired" answer of B7: a 4xx
    whose body says ``Chat id not found`` / ``chat_id_not_found`` (the reference answers 400
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
# Headers that describe the bytes on the wire, not the decoded body kept in the Response built.
_WIRE_HEADERS = frozenset({"content-encoding", "content-length", "transfer-encoding"})


def _capped_error(exc: BoundedReadError) -> httpx.HTTPError:
    """A refused signature answer as the transport error the verifier reports it as
    (``signature_unavailable``): ``ReadError`` over the size cap, ``ReadTimeout`` past the time."""
    message = f"the answer is {exc}"
    return httpx.ReadError(message) if exc.too_large else httpx.ReadTimeout(message)


def _capped_response(answer: httpx.Response, body: BoundedBody) -> httpx.Response:
    """A read :class:`httpx.Response` with ``answer``'s status and headers and ``body``."""
    headers = [(k, v) for k, v in answer.headers.items() if k.lower() not in _WIRE_HEADERS]
    return httpx.Response(answer.status_code, headers=headers, content=body.value())


def _get_capped(http: httpx.Client, url: str, timeout: float) -> httpx.Response:
    """GET ``url`` and read the answer within :data:`SIGNATURE_MAX_BYTES` (after content
    decoding) and ``timeout`` seconds in all (:class:`broker._bounded_read.BoundedBody`: httpx's
    own timeout bounds each read, not the answer, and a body dripped byte by byte would never
    end).

    Raises:
        httpx.HTTPError: transport failure, ``ReadError`` for a larger answer, ``ReadTimeout``
            for one not complete in time.
    """
    body = BoundedBody(SIGNATURE_MAX_BYTES, timeout)
    with http.stream("GET", url, headers=_SIGNATURE_HEADERS, timeout=timeout) as answer:
        try:
            read_bounded(answer.iter_bytes(), body)
        except BoundedReadError as exc:
            raise _capped_error(exc) from None
        return _capped_response(answer, body)


async def _aget_capped(http: Any, url: str, timeout: float) -> httpx.Response:
    """Async :func:`_get_capped`; a client that is not an ``httpx.AsyncClient`` reads the body
    itself (serve's caps its read the same way and bounds the whole exchange by ``timeout``), its
    answer's size is checked after."""
    try:
        if not isinstance(http, httpx.AsyncClient):  # its own client bounds the exchange's time
            response = await http.get(url, headers=_SIGNATURE_HEADERS, timeout=timeout)
            BoundedBody(SIGNATURE_MAX_BYTES).add(response.content)
            return response
        body = BoundedBody(SIGNATURE_MAX_BYTES, timeout)
        async with http.stream("GET", url, headers=_SIGNATURE_HEADERS, timeout=timeout) as answer:
            async for chunk in answer.aiter_bytes():
                body.add(chunk)
            return _capped_response(answer, body)
    except BoundedReadError as exc:
        raise _capped_error(exc) from None


def retry_after_seconds(response: httpx.Response, default: float = 1.0) -> float:
    """``Retry-After`` of ``response`` in seconds (delta-seconds form; ``default`` when absent or
    an HTTP date); never negative."""
    value = response.headers.get("retry-after", "").strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        return default


class _RetryPolicy:
    """The retry policy shared by the sync and async verifiers: "not found" answers retried with
    the linear backoff, 429/503 answers after their ``Retry-After`` within a total budget."""

    def __init__(self, attempts: int, backoff: float, budget: float, chat_id: str | None) -> None:
        self.not_found = iter(_retry_delays(attempts, backoff))
        self.budget = budget
        self.chat_id = chat_id

    def next_delay(self, response: httpx.Response) -> float | None:
        """Seconds to wait before fetching again, or ``None`` when ``response`` is final."""
        if is_signature_not_found(response):
            delay = next(self.not_found, None)
            if delay is not None:
                logger.debug(
                    "signature of %s not stored yet; retrying in %.2f s", self.chat_id, delay
                )
            return delay
        if response.status_code in (429, 503) and self.budget > 0:
            delay = min(retry_after_seconds(response), self.budget)
            self.budget -= max(delay, 0.05)
            logger.info(
                "signature endpoint answered %s; retrying %s in %.2f s",
                response.status_code,
                self.chat_id,
                delay,
            )
            return delay
        return None


def _transport_failure(
    exc: httpx.HTTPError | httpx.InvalidURL, signer: str, chat_id: str | None
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
    problem = chat_id_problem(chat_id)
    if problem is not None:  # the id kept in the result (and the fee store's log) is shortened
        shown = chat_id[:CHAT_ID_MAX_CHARS].encode("unicode_escape").decode("ascii")
        return VerificationResult(
            False, VerificationReason.CHAT_ID_INVALID, checked, shown, problem
        )
    return checked, signature_url(
        service.url, chat_id, model if model is not None else service.model
    )


class AsyncSignatureClient(Protocol):
    """What :func:`averify_response_signature` fetches with: an ``httpx.AsyncClient``, or any
    object whose ``get`` answers an :class:`httpx.Response` (body read) and raises
    :class:`httpx.HTTPError` when the request fails below HTTP (e.g. ``serve``'s fetcher over its
    aiohttp session)."""

    async def get(self, url: str, *, headers: dict[str, str], timeout: float) -> httpx.Response:
        """GET ``url`` (``timeout`` in seconds)."""
        ...


def verify_response_signature(
    service: Service,
    chat_id: str | None,
    *,
    client: httpx.Client | None = None,
    model: str | None = None,
    timeout: float = DEFAULT_SIGNATURE_TIMEOUT_S,
    not_found_attempts: int = SIGNATURE_NOT_FOUND_ATTEMPTS,
    not_found_backoff: float = SIGNATURE_NOT_FOUND_BACKOFF_S,
    binding: ResponseBinding | None = None,
    rate_limit_budget: float = RATE_LIMIT_BUDGET_S,
) -> VerificationResult:
    """Verify a response's TEE signature (§8.2) and, given ``binding``, that the signed text names
    this response's bytes; synchronously. Never raises for network, HTTP or signature-format
    problems (those give ``verified=False``).

    While the provider answers "chat id not found" (:func:`is_signature_not_found`: it may store the
    signature a moment after the stream's last byte) the fetch is repeated, at most
    ``not_found_attempts`` times in all, sleeping ``k × not_found_backoff`` seconds before retry
    ``k``; a 429/503 answer is retried after its ``Retry-After`` while ``rate_limit_budget``
    seconds of waiting remain; any other answer or failure ends at once.

    Args:
        service: the provider's on-chain :class:`Service` (fresh enough to have the current signer).
        chat_id: from :mod:`broker.inference.chat_id`; empty → ``verified=None``.
        client: an ``httpx.Client`` to reuse (default: a temporary one).
        model: the ``model`` query value (default: the on-chain ``service.model``, as the SDK does).
        timeout: seconds for each signature fetch.
        not_found_attempts: fetches at most while the answer is "not found" (≥ 1; 1 = no retry).
        not_found_backoff: seconds; retry ``k`` waits ``k × not_found_backoff``.
        binding: the local request/response hashes (:class:`ResponseBinding`); ``None`` checks the
            signature only (``binding="signature_only"`` in the result).
        rate_limit_budget: seconds of ``Retry-After`` waiting allowed in all.

    Returns:
        A :class:`VerificationResult`.

    Raises:
        ValueError: ``not_found_attempts`` < 1 or ``not_found_backoff`` < 0.
    """
    policy = _RetryPolicy(not_found_attempts, not_found_backoff, rate_limit_budget, chat_id)
    prepared = _prepare_signature_request(service, chat_id, model)
    if isinstance(prepared, VerificationResult):
        return prepared
    signer, url = prepared
    own = client is None
    http = client or httpx.Client(timeout=timeout)
    try:
        while True:
            response = _get_capped(http, url, timeout)
            wait = policy.next_delay(response)
            if wait is None:
                break
            time.sleep(wait)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:  # InvalidURL: the on-chain url is not one
        return _transport_failure(exc, signer, chat_id)
    finally:
        if own:
            http.close()
    return evaluate_signature_response(response, signer, chat_id, binding=binding)


async def averify_response_signature(
    service: Service,
    chat_id: str | None,
    *,
    client: AsyncSignatureClient | None = None,
    model: str | None = None,
    timeout: float = DEFAULT_SIGNATURE_TIMEOUT_S,
    not_found_attempts: int = SIGNATURE_NOT_FOUND_ATTEMPTS,
    not_found_backoff: float = SIGNATURE_NOT_FOUND_BACKOFF_S,
    binding: ResponseBinding | None = None,
    rate_limit_budget: float = RATE_LIMIT_BUDGET_S,
) -> VerificationResult:
    """Async twin of :func:`verify_response_signature` (``asyncio.sleep`` between retries); same
    arguments and contract, except ``client``: an ``httpx.AsyncClient`` or another
    :class:`AsyncSignatureClient` (default: a temporary ``httpx.AsyncClient``)."""
    policy = _RetryPolicy(not_found_attempts, not_found_backoff, rate_limit_budget, chat_id)
    prepared = _prepare_signature_request(service, chat_id, model)
    if isinstance(prepared, VerificationResult):
        return prepared
    signer, url = prepared
    own = client is None
    http: Any = client or httpx.AsyncClient(timeout=timeout)
    try:
        while True:
            response = await _aget_capped(http, url, timeout)
            wait = policy.next_delay(response)
            if wait is None:
                break
            await asyncio.sleep(wait)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:  # InvalidURL: the on-chain url is not one
        return _transport_failure(exc, signer, chat_id)
    finally:
        if own:
            await http.aclose()
    return evaluate_signature_response(response, signer, chat_id, binding=binding)
