"""The JSON bodies a provider serves at ``GET /v1/quote`` (and the separated LLM node's report),
recognised and decoded into one shape.

Source: attestation.md §1.2 (eras: tappd, dstack passthrough, current 0G body), §1.1 (the
vLLM-proxy report of ``TargetSeparated`` providers), provider-gateway.md B8 (mock/no-TEE body,
CryptoPilot ``{compose_content, evidence}``). Every field decoded here is *unauthenticated*: the
verifier ties it to the quote before using it.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from broker.attestation.errors import ReportFormatError

__all__ = [
    "AttestationReportBody",
    "ReportKind",
    "is_valid_unicode",
    "json_document",
    "parse_report_body",
]


class ReportKind(StrEnum):
    """What a report body is: a TDX/dstack report to verify, a no-TEE report, or an unsupported
    format (recognised, reported, not verified)."""

    DSTACK = "dstack"
    NO_TEE = "no_tee"
    UNSUPPORTED = "unsupported"


@dataclass(frozen=True)
class AttestationReportBody:
    """A decoded report body.

    Attributes:
        kind: :class:`ReportKind`.
        format: ``"0g-dstack"`` (current 0G body), ``"dstack-getquote"`` (hex report_data),
            ``"vllm-proxy"`` (separated LLM report), ``"no-tee"``, ``"tappd-legacy"`` or
            ``"cryptopilot"``.
        reason: why the kind was chosen (for NO_TEE / UNSUPPORTED).
        quote: raw quote bytes (DSTACK only).
        event_log: the event log as JSON text or array, or ``None``.
        tcb_info: the dstack ``tcb_info`` object, or ``None``.
        report_data: the JSON ``report_data`` field decoded (base64 or hex), or ``None``.
        vm_config: the ``vm_config`` text, or ``None``.
        signing_address: the ``signing_address`` field (vLLM proxy, no-TEE body), or ``None``.
        nonce: the vLLM proxy's ``nonce`` / ``request_nonce`` field (hex) decoded, or ``None``.
    """

    kind: ReportKind
    format: str
    reason: str = ""
    quote: bytes | None = None
    event_log: Any = None
    tcb_info: dict[str, Any] | None = None
    report_data: bytes | None = None
    vm_config: str | None = None
    signing_address: str | None = None
    nonce: bytes | None = None


def is_valid_unicode(text: str) -> bool:
    """Whether ``text`` has a UTF-8 form: a JSON ``\\ud800`` escape decodes to a lone surrogate,
    which no file or event name can hold.

    Args:
        text: decoded JSON text.
    Returns:
        ``False`` when ``text`` holds a lone surrogate.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def json_document(
    value: Any, what: str, kind: type[dict | list], *, decode: bool | None = None
) -> Any:
    """Decode a JSON document given as text (or already parsed) and check its top-level type.

    Args:
        value: JSON text (``str``/``bytes``) or an already-parsed value.
        what: the name used in error messages (``"<what> is not JSON"``).
        kind: ``dict`` (a JSON object) or ``list`` (a JSON array).
        decode: whether to ``json.loads`` ``value``; default: when it is ``str`` or ``bytes``.
    Returns:
        the decoded value, of type ``kind``.
    Raises:
        ReportFormatError: not JSON (or nested too deeply to parse), or not a JSON object/array
            as ``kind`` asks.
    """
    if decode is None:
        decode = isinstance(value, str | bytes)
    if decode:
        try:
            value = json.loads(value)
        except ValueError as exc:
            raise ReportFormatError(f"{what} is not JSON") from exc
        except RecursionError:  # nested arrays or objects deeper than the parser follows
            raise ReportFormatError(f"{what} is nested too deeply") from None
    if not isinstance(value, kind):
        raise ReportFormatError(f"{what} is not a JSON {'array' if kind is list else 'object'}")
    return value


def _decode_quote(value: Any) -> bytes:
    if isinstance(value, list):  # a JSON byte array (near/mpc style)
        try:
            return bytes(value)
        except (TypeError, ValueError) as exc:
            raise ReportFormatError("quote byte array has values outside 0..255") from exc
    if not isinstance(value, str):
        raise ReportFormatError("quote must be a hex string")
    text = value.strip()
    text = text[2:] if text.startswith(("0x", "0X")) else text
    try:
        return bytes.fromhex(text)
    except ValueError as exc:
        raise ReportFormatError("quote is not hex") from exc


def _decode_report_data(value: Any) -> bytes | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ReportFormatError("report_data must be a string (base64 or hex)")
    text = value.strip()
    bare = text[2:] if text.startswith(("0x", "0X")) else text
    if len(bare) == 128 or text != bare:
        try:
            return bytes.fromhex(bare)
        except ValueError:
            pass
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ReportFormatError("report_data is neither base64 nor hex") from exc


def _decode_nonce(doc: dict[str, Any]) -> bytes | None:
    value = doc.get("nonce", doc.get("request_nonce"))
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ReportFormatError("nonce must be a hex string")
    text = value.strip()
    text = text[2:] if text.startswith(("0x", "0X")) else text
    try:
        return bytes.fromhex(text)
    except ValueError as exc:
        raise ReportFormatError("nonce is not hex") from exc


def _decode_tcb_info(doc: dict[str, Any]) -> dict[str, Any] | None:
    value = doc.get("tcb_info")
    if value in (None, "") and isinstance(doc.get("info"), dict):
        value = doc["info"].get("tcb_info")
    if value in (None, ""):
        return None
    return json_document(value, "tcb_info", dict, decode=isinstance(value, str))


def parse_report_body(body: dict[str, Any] | str | bytes) -> AttestationReportBody:
    """Recognise and decode a ``/v1/quote`` body (or a separated LLM report).

    Args:
        body: the raw body (bytes or text) or the parsed JSON object.
    Returns:
        :class:`AttestationReportBody`. A CryptoPilot ``{compose_content, evidence}`` body or a
        tappd-era body gives ``kind=UNSUPPORTED``; a body without a real quote (our gateway on a
        machine without TDX, the Go ``mock_intel_quote``) gives ``kind=NO_TEE``.
    Raises:
        ReportFormatError: not JSON, not an object, or a field with the wrong type/encoding.
    """
    body = json_document(body, "attestation report", dict)

    if "compose_content" in body and "evidence" in body:
        return AttestationReportBody(
            ReportKind.UNSUPPORTED,
            "cryptopilot",
            "CryptoPilot {compose_content, evidence} reports are not supported by this verifier",
        )
    if "provider_signer" in body and "quote" in body:
        return AttestationReportBody(
            ReportKind.UNSUPPORTED,
            "tappd-legacy",
            "tappd-era report (report_data is a hash, not the signer address) is not supported",
        )

    signing_address = body.get("signing_address") or body.get("provider_signer")
    raw_quote = body.get("quote")
    fmt = "0g-dstack"
    if raw_quote in (None, "") and "intel_quote" in body:
        raw_quote, fmt = body.get("intel_quote"), "vllm-proxy"
    marker = str(body.get("tee") or body.get("tee_type") or "").lower()
    mock = isinstance(raw_quote, str) and raw_quote.lower().startswith("mock")
    if raw_quote in (None, "") or mock or marker in ("none", "no_tee", "no-tee", "mock"):
        why = "the report carries no TDX quote (provider not running in a TEE)"
        if mock:
            why = f"the report carries a mock quote ({raw_quote!r}): not running in a TEE"
        return AttestationReportBody(
            ReportKind.NO_TEE,
            "no-tee",
            why,
            report_data=_decode_report_data(body.get("report_data")),
            signing_address=signing_address
            if isinstance(signing_address, str) and is_valid_unicode(signing_address)
            else None,
        )

    report_data_field = body.get("report_data")
    if fmt == "0g-dstack" and isinstance(report_data_field, str) and len(report_data_field) == 128:
        fmt = "dstack-getquote"
    vm_config = body.get("vm_config")
    return AttestationReportBody(
        ReportKind.DSTACK,
        fmt,
        quote=_decode_quote(raw_quote),
        event_log=body.get("event_log"),
        tcb_info=_decode_tcb_info(body),
        report_data=_decode_report_data(report_data_field),
        vm_config=vm_config if isinstance(vm_config, str) else None,
        signing_address=signing_address
        if isinstance(signing_address, str) and is_valid_unicode(signing_address)
        else None,
        nonce=_decode_nonce(body) if fmt == "vllm-proxy" else None,
    )
