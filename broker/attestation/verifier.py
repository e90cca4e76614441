"""Full local verification of a provider's dstack/TDX attestation report.

Runs the steps of attestation.md §5.1 in order: recognise the ``/v1/quote`` body, parse the quote,
check the quote signature, the QE report binding and signature, the QE identity (Intel's TD QE,
not debug), the PCK chain up to the pinned Intel root, the TCB status (dcap-qvl with collateral),
the TD attributes, the signer named by the *quote's* report_data (never the JSON field alone), the
``ZG-Quote-Signature`` header, the RTMR replay of the event log, the compose hash, MRCONFIGID, the
user's allowlists and the quote age. Each step becomes a
:class:`~broker.attestation.report.CheckResult`; the verdict fails closed.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import dcap_qvl
import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from eth_account import Account
from eth_account.messages import encode_defunct
from eth_utils import keccak, to_checksum_address

from broker._bounded_read import BoundedBody, BoundedReadError, read_bounded
from broker.attestation.collateral import (
    TcbEvaluationError,
    collateral_expiry,
    evaluate_tcb,
    find_revoked_certificates,
    load_collateral,
)
from broker.attestation.compose import compose_hash, compose_images, compose_unpinned_code
from broker.attestation.errors import (
    AttestationFetchError,
    CollateralError,
    QuoteFormatError,
    ReportFormatError,
)
from broker.attestation.eventlog import (
    app_events,
    parse_event_log,
    replay_event_log,
    system_event,
)
from broker.attestation.pck import PckChain, PckChainError, load_root_ca, verify_pck_chain
from broker.attestation.policy import AttestationPolicy
from broker.attestation.quote import (
    INTEL_TD_QE_ISVPRODID,
    INTEL_TD_QE_MRSIGNER,
    Quote,
    parse_quote,
    split_pem_chain,
)
from broker.attestation.report import CheckStatus, VerificationReport
from broker.attestation.report_formats import (
    AttestationReportBody,
    ReportKind,
    is_valid_unicode,
    parse_report_body,
)
from broker.attestation.signature import (
    SignatureCheckError,
    verify_qe_report_binding,
    verify_qe_report_signature,
    verify_quote_signature,
)
from broker.attestation.tcb import REVOKED, TCB_STATUSES, TcbFailure
from broker.wire.eth_signature import is_low_s

__all__ = [
    "QUOTE_REPORT_MAX_BYTES",
    "QUOTE_SIGNATURE_HEADER",
    "FetchedReport",
    "fetch_quote_report",
    "report_data_nonce",
    "signer_from_report_data",
    "td_attribute_problems",
    "verify_attestation",
]

QUOTE_SIGNATURE_HEADER = "ZG-Quote-Signature"
"""Response header of newer providers: EIP-191 signature of keccak256(body) by the TEE signer."""

QUOTE_REPORT_MAX_BYTES = 8 * 1024 * 1024
"""Most bytes read of a downloaded report (after content decoding). A real ``/v1/quote`` body
(quote, event log, tcb_info, NVIDIA evidence) is tens of kilobytes."""

PASSED, FAILED, SKIPPED = CheckStatus.PASSED, CheckStatus.FAILED, CheckStatus.SKIPPED
_ADDR_ASCII = re.compile(rb"^0x[0-9a-fA-F]{40}$")


@dataclass(frozen=True)
class FetchedReport:
    """A downloaded report: the exact ``body`` bytes, the ``ZG-Quote-Signature`` header (or
    ``None``), and the ``url`` fetched."""

    body: bytes
    quote_signature: str | None
    url: str


def fetch_quote_report(
    url: str,
    *,
    client: httpx.Client | None = None,
    timeout: float = 30.0,
    path: str = "/v1/quote",
    params: dict[str, str] | None = None,
) -> FetchedReport:
    """``GET {url}{path}`` and keep the raw body (provider-gateway.md B8; attestation.md §1.1).

    Args:
        url: the service URL from the chain (``Service.url``), without a trailing path.
        client: an ``httpx.Client`` to reuse (not closed here).
        timeout: seconds.
        path: ``/v1/quote`` or the separated LLM report path.
        params: query parameters (e.g. ``{"model": ...}``).
    Returns:
        :class:`FetchedReport`.
    Raises:
        AttestationFetchError: network error, an invalid URL, a non-2xx answer, a body larger than
            :data:`QUOTE_REPORT_MAX_BYTES` (never read whole), or one not complete within
            ``timeout`` seconds (httpx bounds each read only: a dripped body would never end).
    """
    target = url.rstrip("/") + path
    own = client is None
    client = client or httpx.Client(follow_redirects=True)
    bounded = BoundedBody(QUOTE_REPORT_MAX_BYTES, timeout)
    try:
        with client.stream("GET", target, params=params, timeout=timeout) as resp:
            if not 200 <= resp.status_code < 300:
                raise AttestationFetchError(f"GET {target} answered HTTP {resp.status_code}")
            try:
                body = read_bounded(resp.iter_bytes(), bounded)
            except BoundedReadError as exc:
                raise AttestationFetchError(f"GET {target}: the report is {exc}") from None
            signature = resp.headers.get(QUOTE_SIGNATURE_HEADER)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:  # InvalidURL: the on-chain url is not one
        raise AttestationFetchError(f"GET {target} failed: {type(exc).__name__}: {exc}") from exc
    finally:
        if own:
            client.close()
    return FetchedReport(body, signature, target)


def signer_from_report_data(report_data: bytes) -> tuple[str | None, str]:
    """Read the TEE signer address from a quote's 64-byte REPORTDATA (attestation.md §1.3).

    Layouts, tried in this order:

    * ``"v1"`` binary (0G §4.2): ``rd[52:56] == be32(1)``, ``rd[56:64]`` zero: address
      ``rd[32:52]``, X25519 ``enc_pub`` ``rd[0:32]``, whose last 12 bytes are not all zero (a real
      key never has 96 zero bits there; a vLLM-proxy report_data always does, and its nonce, which
      whoever asks for the quote chooses, could otherwise spell a v1 tail naming any address);
    * ``"legacy"`` ASCII (0G): ``"0x"`` + 40 hex in ``rd[0:42]``, rest zero;
    * ``"vllm-proxy"`` (the LLM node of a ``TargetSeparated`` provider, as the NEAR AI and Phala
      vLLM-proxy verifiers document): the raw 20-byte signing address in ``rd[0:20]`` (not all
      zero), ``rd[20:32]`` zero, then the 32-byte request nonce in ``rd[32:64]`` (not all zero:
      the proxy always sets one; see :func:`report_data_nonce`).

    Returns:
        ``(address_eip55 | None, layout)`` with layout ``"v1"``, ``"legacy"``, ``"vllm-proxy"`` or
        ``"unknown"``.
    """
    rd = bytes(report_data)
    if len(rd) != 64:
        return None, "unknown"
    if rd[52:56] == b"\x00\x00\x00\x01" and not any(rd[56:]) and any(rd[20:32]):
        return to_checksum_address(rd[32:52]), "v1"
    if _ADDR_ASCII.match(rd[:42]) and not any(rd[42:]):
        return to_checksum_address(rd[:42].decode()), "legacy"
    if any(rd[:20]) and not any(rd[20:32]) and any(rd[32:]):
        return to_checksum_address(rd[:20]), "vllm-proxy"
    return None, "unknown"


def report_data_nonce(report_data: bytes) -> bytes | None:
    """The 32-byte request nonce of a ``"vllm-proxy"`` report_data (``rd[32:64]``), or ``None``
    for the other layouts (see :func:`signer_from_report_data`)."""
    if signer_from_report_data(report_data)[1] != "vllm-proxy":
        return None
    return bytes(report_data[32:64])


_TD_ATTR_TUD_RESERVED = 0xFE  # bits 1-7 (bit 0 is DEBUG, checked apart)
_TD_ATTR_SEC_RESERVED = 0x0FFFFF00  # bits 8-27
_TD_ATTR_SEPT_VE_DISABLE = 1 << 28
_TD_ATTR_MIGRATABLE = 1 << 29
_TD_ATTR_OTHER_RESERVED = 0x7FFFFFFF00000000  # bits 32-62 (bit 63 is PERFMON)


def td_attribute_problems(td_attributes: bytes) -> list[str]:
    """What is wrong with a TD's TDATTRIBUTES besides DEBUG (attestation.md §2.2), by the rules
    dcap-qvl 0.7 applies once it has collateral, so they hold without collateral too.

    Args:
        td_attributes: the 8 bytes of the TD report (a little-endian u64).
    Returns:
        one line per problem (empty when none): reserved bits set (TUD 1-7, SEC 8-27, OTHER
        32-62), SEPT_VE_DISABLE (bit 28) clear, MIGRATABLE (bit 29) set. PKS, KL and PERFMON
        (bits 30, 31, 63) are allowed.
    """
    value = int.from_bytes(td_attributes, "little")
    problems = []
    for mask, what in (
        (_TD_ATTR_TUD_RESERVED, "TUD"),
        (_TD_ATTR_SEC_RESERVED, "SEC"),
        (_TD_ATTR_OTHER_RESERVED, "OTHER"),
    ):
        if value & mask:
            problems.append(f"reserved {what} bits of TDATTRIBUTES are set ({value & mask:#x})")
    if not value & _TD_ATTR_SEPT_VE_DISABLE:
        problems.append("SEPT_VE_DISABLE is not set (the TD takes #VE on pending pages)")
    if value & _TD_ATTR_MIGRATABLE:
        problems.append("the TD is migratable (MIGRATABLE is set)")
    return problems


def _now(now: datetime | float | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if isinstance(now, datetime):
        return now.replace(tzinfo=UTC) if now.tzinfo is None else now.astimezone(UTC)
    return datetime.fromtimestamp(int(now), UTC)


def _passed(check: Any) -> bool:
    return check is not None and check.status is CheckStatus.PASSED


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _canonical(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _payload_text(payload: bytes) -> str:
    """An event payload as text when it is printable UTF-8, else as hex."""
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return payload.hex()
    return text if text.isprintable() else payload.hex()


class _Run:
    """State of one verification (internal)."""

    def __init__(
        self,
        report: VerificationReport,
        policy: AttestationPolicy,
        now: datetime,
        root_ca: Any,
    ) -> None:
        self.r = report
        self.policy = policy
        self.now = now
        self.root_ca = root_ca
        self.quote: Quote | None = None
        self.chain: PckChain | None = None
        self.unpinned: list[str] = []

    # -- quote crypto -------------------------------------------------------------------------
    def crypto(self, quote: Quote) -> None:
        r = self.r
        try:
            verify_quote_signature(quote)
            r.add("quote_signature", PASSED, "quote body signed by the attestation key")
        except SignatureCheckError as exc:
            r.add("quote_signature", FAILED, str(exc))
        try:
            verify_qe_report_binding(quote)
            r.add("qe_report_binding", PASSED, "QE report_data binds the attestation key")
        except SignatureCheckError as exc:
            r.add("qe_report_binding", FAILED, str(exc))
        self.qe_identity(quote)
        leaf_key = None
        try:
            leaf = x509.load_pem_x509_certificate(split_pem_chain(quote.pck_chain_pem)[0].encode())
            leaf_key = leaf.public_key()
        except (ValueError, IndexError):
            pass
        if not isinstance(leaf_key, ec.EllipticCurvePublicKey):
            r.add("qe_report_signature", FAILED, "PCK leaf certificate missing or not an EC key")
        else:
            try:
                verify_qe_report_signature(quote, leaf_key)
                r.add("qe_report_signature", PASSED, "QE report signed by the PCK leaf key")
            except SignatureCheckError as exc:
                r.add(
                    "qe_report_signature",
                    FAILED,
                    str(exc),
                    failure=TcbFailure.QE_REPORT_SIGNATURE_INVALID,
                )
        try:
            self.chain = verify_pck_chain(quote.pck_chain_pem, now=self.now, root_ca=self.root_ca)
            r.evidence["fmspc"] = self.chain.sgx.fmspc
            r.add(
                "pck_chain",
                PASSED,
                "PCK chain verifies up to the "
                + ("pinned Intel SGX Root CA" if self.root_ca is None else "injected root CA"),
                fmspc=self.chain.sgx.fmspc,
                ca=self.chain.ca_type,
                leaf_serial=format(self.chain.leaf.serial_number, "x"),
            )
        except PckChainError as exc:
            r.add("pck_chain", FAILED, str(exc))

    def qe_identity(self, quote: Quote) -> None:
        """``qe_identity``: the quoting enclave is Intel's TD QE (MRSIGNER, ISVPRODID) and not a
        debug enclave. dcap-qvl checks this against the QE Identity collateral too; checked here
        so that it holds without collateral: a platform owner who can launch an enclave with the
        provisioning key could otherwise have the PCK certify a quoting enclave of their own,
        which signs any TD report."""
        qe, problems = quote.qe_report, []
        if qe.mr_signer != INTEL_TD_QE_MRSIGNER:
            problems.append(f"QE MRSIGNER {qe.mr_signer.hex()} is not Intel's TD QE")
        if qe.isv_prod_id != INTEL_TD_QE_ISVPRODID:
            problems.append(f"QE ISVPRODID {qe.isv_prod_id} is not the TD QE's (2)")
        if qe.is_debug:
            problems.append("the QE is a debug enclave")
        if problems:
            self.r.add(
                "qe_identity", FAILED, "; ".join(problems), failure=TcbFailure.QE_IDENTITY_MISMATCH
            )
        else:
            self.r.add("qe_identity", PASSED, "quoting enclave is Intel's TD QE, not debug")

    # -- TCB ----------------------------------------------------------------------------------
    def tcb(self, quote: Quote, collateral: Any) -> None:
        r, required = self.r, self.policy.require_tcb
        if collateral is None:
            r.add(
                "tcb_status",
                SKIPPED,
                "no collateral given: TCB status not evaluated",
                required=required,
            )
            return
        try:
            if hasattr(collateral, "get_collateral"):
                if self.chain is not None:
                    fmspc, ca = self.chain.sgx.fmspc, self.chain.ca_type
                else:
                    parsed = dcap_qvl.parse_quote(quote.raw)
                    fmspc, ca = parsed.fmspc(), parsed.ca()
                col = collateral.get_collateral(fmspc, ca, now=self.now)
            else:
                col = load_collateral(collateral)
        except (CollateralError, ValueError, RuntimeError) as exc:
            r.add("tcb_status", SKIPPED, f"collateral unavailable: {exc}", required=required)
            return
        root_der = None
        if self.root_ca is not None:
            root_der = load_root_ca(self.root_ca).public_bytes(serialization.Encoding.DER)
        expiry = collateral_expiry(col)
        try:
            ev = evaluate_tcb(quote.raw, col, now=self.now, root_ca_der=root_der)
        except TcbEvaluationError as exc:
            # A refusal always fails the check (whatever require_tcb says: a failed check fails the
            # verdict), and names why: revoked level / revoked certificate / stale collateral ...
            r.tcb_status = exc.status
            extra: dict[str, Any] = {}
            if exc.code == TcbFailure.CERTIFICATE_REVOKED and self.chain is not None:
                listed = find_revoked_certificates(col, [self.chain.leaf, self.chain.intermediate])
                extra["revoked_certificates"] = [f"{crl}:{serial}" for crl, serial in listed]
            r.add(
                "tcb_status",
                FAILED,
                f"DCAP verification refused the quote: {exc}",
                required=required,
                failure=exc.code,
                tcb_status=exc.status,
                collateral_expiry=expiry.isoformat() if expiry else None,
                **extra,
            )
            return
        r.tcb_status, r.advisory_ids = ev.status, list(ev.advisory_ids)
        details = {
            "tcb_status": ev.status,
            "advisory_ids": list(ev.advisory_ids),
            "platform_status": ev.detail.get("platform_status"),
            "qe_status": ev.detail.get("qe_status"),
            "collateral_expiry": ev.collateral_expiry.isoformat() if ev.collateral_expiry else None,
        }
        rejected = sorted(set(ev.advisory_ids) & self.policy.rejected_advisory_ids)
        advisories = f" (advisories: {', '.join(ev.advisory_ids)})" if ev.advisory_ids else ""
        if ev.status not in TCB_STATUSES or ev.status == REVOKED:
            r.add(
                "tcb_status",
                FAILED,
                f"TCB status {ev.status!r} is not an acceptable Intel status{advisories}",
                required=required,
                **details,
            )
        elif ev.status not in self.policy.accepted_tcb_statuses:
            r.add(
                "tcb_status",
                FAILED,
                f"TCB status {ev.status} is not accepted by the policy{advisories}",
                required=required,
                **details,
            )
        elif rejected:
            r.add(
                "tcb_status",
                FAILED,
                f"rejected advisories: {', '.join(rejected)}",
                required=required,
                **details,
            )
        else:
            r.add(
                "tcb_status",
                PASSED,
                f"TCB status {ev.status}{advisories}",
                required=required,
                **details,
            )

    # -- TD attributes and signer -------------------------------------------------------------
    def td_attributes(self, quote: Quote) -> None:
        body, problems = quote.body, []
        if body.is_debug:
            problems.append("TD debug attribute is set")
        problems += td_attribute_problems(body.td_attributes)
        if any(body.mr_signer_seam):
            problems.append("MRSIGNERSEAM is not zero (TDX module not signed by Intel)")
        if body.mr_service_td is not None and any(body.mr_service_td):
            problems.append("MRSERVICETD is not zero")
        if problems:
            self.r.add("td_attributes", FAILED, "; ".join(problems))
        else:
            self.r.add(
                "td_attributes",
                PASSED,
                "not debug; SEPT_VE_DISABLE set; not migratable; no reserved bits; "
                "Intel TDX module; no service TD",
            )

    def signer(
        self,
        quote: Quote,
        body: AttestationReportBody,
        expected_signer: str | None,
        raw_body: bytes | None,
        header_sig: str | None,
        expected_nonce: bytes | None = None,
    ) -> None:
        r, rd = self.r, quote.body.report_data
        address, layout = signer_from_report_data(rd)
        r.signer = address
        required = self.policy.require_signer
        if address is None:
            r.add(
                "report_data_signer",
                FAILED,
                "the quote's report_data does not carry a signer address "
                "(neither the 0G legacy ASCII / v1 binary layout nor the vLLM-proxy layout)",
                required=required,
            )
        elif not int(address, 16):
            r.add(
                "report_data_signer",
                FAILED,
                "the quote's report_data names the zero address, which no key can sign for",
                required=required,
                layout=layout,
            )
        elif expected_signer is None:
            r.add(
                "report_data_signer",
                SKIPPED,
                f"no expected signer given; quote names {address}",
                required=required,
                layout=layout,
            )
        elif address.lower() != expected_signer.lower():
            r.add(
                "report_data_signer",
                FAILED,
                f"quote names signer {address}, expected {to_checksum_address(expected_signer)}",
                required=required,
                layout=layout,
            )
        else:
            r.add(
                "report_data_signer",
                PASSED,
                f"quote names signer {address}",
                required=required,
                layout=layout,
            )

        if layout == "vllm-proxy":
            self.nonce(rd[32:64], body, expected_nonce)
        if body.signing_address and address is not None:
            same = body.signing_address.lower() == address.lower()
            r.add(
                "signing_address_json",
                PASSED if same else FAILED,
                "JSON signing_address equals the quote's signer"
                if same
                else f"JSON signing_address {body.signing_address} is not the quote's signer",
                required=False,
            )

        if body.report_data is None:
            r.add("report_data_json", SKIPPED, "report has no report_data field", required=False)
        elif body.report_data.ljust(64, b"\x00") != rd:
            r.add(
                "report_data_json",
                FAILED,
                "the JSON report_data differs from the quote's report_data",
                required=False,
            )
        else:
            r.add("report_data_json", PASSED, "JSON report_data equals the quote's", required=False)

        if header_sig is None or raw_body is None:
            why = "no ZG-Quote-Signature header" if header_sig is None else "raw body not available"
            r.add("quote_response_signature", SKIPPED, why, required=False)
            return
        try:
            sig = bytes.fromhex(header_sig.strip().removeprefix("0x").removeprefix("0X"))
            if len(sig) == 65 and not is_low_s(sig):
                raise ValueError("s above n/2 (a malleated signature)")
            recovered = Account.recover_message(
                encode_defunct(primitive=keccak(raw_body)), signature=sig
            )
        except Exception as exc:  # noqa: BLE001 - eth_account raises many types on malformed input
            r.add(
                "quote_response_signature",
                FAILED,
                f"malformed ZG-Quote-Signature: {type(exc).__name__}",
                required=False,
            )
            return
        if address is not None and recovered.lower() == address.lower():
            r.add(
                "quote_response_signature",
                PASSED,
                "response body signed by the attested signer",
                required=False,
            )
        else:
            r.add(
                "quote_response_signature",
                FAILED,
                f"ZG-Quote-Signature recovers to {recovered}, not the attested signer",
                required=False,
            )

    def nonce(self, quoted: bytes, body: AttestationReportBody, expected: bytes | None) -> None:
        """``report_data_nonce`` (not required): the vLLM-proxy nonce in the quote against the
        nonce we asked for (freshness) and the JSON ``nonce`` field (consistency)."""
        r = self.r
        r.evidence["report_data_nonce"] = quoted.hex()
        if body.nonce is not None and body.nonce != quoted:
            r.add(
                "report_data_nonce",
                FAILED,
                "the JSON nonce differs from the nonce in the quote's report_data",
                required=False,
            )
        elif expected is not None and bytes(expected) == quoted:
            r.add(
                "report_data_nonce",
                PASSED,
                "the quote was made for our request nonce (fresh)",
                required=False,
            )
        elif expected is not None:
            r.add(
                "report_data_nonce",
                SKIPPED,
                "the quote's nonce is not the one we sent: the report's freshness is unknown",
                required=False,
                nonce=quoted.hex(),
            )
        else:
            r.add(
                "report_data_nonce",
                SKIPPED,
                "no request nonce sent: the report's freshness is unknown",
                required=False,
                nonce=quoted.hex(),
            )

    # -- event log and compose ----------------------------------------------------------------
    def measurements(self, quote: Quote, body: AttestationReportBody) -> None:
        r = self.r
        raw_log = body.event_log
        if raw_log in (None, "", []) and body.tcb_info is not None:
            raw_log = body.tcb_info.get("event_log")
        if raw_log in (None, "", []):
            r.add("rtmr3_replay", SKIPPED, "report has no event log")
            r.add("compose_hash", SKIPPED, "report has no event log")
            return
        r.evidence["event_log_sha256"] = _sha256(_canonical(raw_log))
        try:
            events = parse_event_log(raw_log)
        except ReportFormatError as exc:
            r.add("rtmr3_replay", FAILED, str(exc))
            r.add("compose_hash", SKIPPED, "event log unreadable")
            return
        replay = replay_event_log(events)
        rtmrs = quote.body.rtmrs
        if replay.rtmrs[3] != rtmrs[3]:
            r.add(
                "rtmr3_replay",
                FAILED,
                "replayed RTMR3 differs from the quote's: the event log is not the measured one",
                replayed=replay.rtmrs[3].hex(),
            )
        elif replay.errors:
            r.add("rtmr3_replay", FAILED, "; ".join(replay.errors))
        else:
            r.add("rtmr3_replay", PASSED, "event log replays to the quote's RTMR3")
        if replay.boot_digests_missing:
            r.add("rtmr0_2_replay", SKIPPED, "boot event digests absent", required=False)
        else:
            bad = [f"RTMR{i}" for i in range(3) if replay.rtmrs[i] != rtmrs[i]]
            if bad:
                r.add("rtmr0_2_replay", FAILED, f"replayed {', '.join(bad)} differ from the quote")
            else:
                r.add("rtmr0_2_replay", PASSED, "boot events replay to RTMR0-2", required=False)

        facts = {}
        for name in ("app-id", "instance-id", "key-provider", "os-image-hash", "storage-fs"):
            ev = system_event(events, name)
            if ev is not None:
                text = name in ("key-provider", "storage-fs")
                facts[name.replace("-", "_")] = (
                    _payload_text(ev.payload) if text else ev.payload.hex()
                )
        apps = [f"{e.event}={_payload_text(e.payload)}" for e in app_events(events)]
        event = system_event(events, "compose-hash")
        app_compose = (body.tcb_info or {}).get("app_compose")
        if event is None:
            r.add("compose_hash", FAILED, "no compose-hash event before system-ready")
        elif not isinstance(app_compose, str):
            r.add(
                "compose_hash",
                SKIPPED,
                "tcb_info.app_compose absent: compose cannot be checked",
                event_compose_hash=event.payload.hex(),
            )
        elif not is_valid_unicode(app_compose):
            r.add(
                "compose_hash",
                FAILED,
                "tcb_info.app_compose is not valid Unicode (lone surrogate): no file hashes to it",
                event=event.payload.hex(),
            )
        else:
            computed = compose_hash(app_compose)
            r.evidence["app_compose_sha256"] = computed
            r.images = [img.reference for img in compose_images(app_compose)]
            self.unpinned = compose_unpinned_code(app_compose)
            if computed != event.payload.hex():
                r.add(
                    "compose_hash",
                    FAILED,
                    "sha256(app_compose) differs from the compose-hash event",
                    computed=computed,
                    event=event.payload.hex(),
                    **facts,
                )
            else:
                r.compose_hash = computed
                r.add(
                    "compose_hash",
                    PASSED,
                    f"app_compose hashes to {computed}",
                    computed=computed,
                    event=event.payload.hex(),
                    app_events=apps,
                    **facts,
                )

        cfg = quote.body.mr_config_id
        if not any(cfg):
            r.add("mr_config_id", SKIPPED, "MRCONFIGID not used (all zero)", required=False)
        elif cfg[0] == 1 and event is not None:
            if cfg[1:33] == event.payload and not any(cfg[33:]):
                r.add("mr_config_id", PASSED, "MRCONFIGID v1 names the compose hash")
            else:
                r.add(
                    "mr_config_id",
                    FAILED,
                    "MRCONFIGID v1 does not name the compose-hash event's hash",
                )
        else:
            r.add(
                "mr_config_id", SKIPPED, f"MRCONFIGID version {cfg[0]} not checked", required=False
            )

    # -- policy -------------------------------------------------------------------------------
    def allowlists(self, quote: Quote) -> None:
        p, r, b = self.policy, self.r, quote.body
        for name, allowed, value in (
            ("policy_mrtd", p.allowed_mrtd, b.mr_td),
            ("policy_rtmr0", p.allowed_rtmr0, b.rt_mr0),
            ("policy_rtmr1", p.allowed_rtmr1, b.rt_mr1),
            ("policy_rtmr2", p.allowed_rtmr2, b.rt_mr2),
        ):
            if allowed:
                ok = value.hex() in allowed
                r.add(
                    name,
                    PASSED if ok else FAILED,
                    f"{value.hex()} {'is' if ok else 'is not'} allowed",
                )
        if p.allowed_compose_hashes:
            if r.compose_hash is None:
                r.add("policy_compose_hash", SKIPPED, "compose hash not established")
            else:
                ok = r.compose_hash in p.allowed_compose_hashes
                r.add(
                    "policy_compose_hash",
                    PASSED if ok else FAILED,
                    f"compose hash {'is' if ok else 'is not'} allowed",
                )
        if p.allowed_image_digests:
            if r.compose_hash is None or not r.images:
                r.add(
                    "policy_image_digests",
                    SKIPPED,
                    "images not established from a verified compose",
                )
            else:
                bad = [
                    ref
                    for ref in r.images
                    if "@" not in ref or ref.split("@", 1)[1].lower() not in p.allowed_image_digests
                ]
                if bad:
                    r.add("policy_image_digests", FAILED, f"images not allowed: {', '.join(bad)}")
                elif self.unpinned:
                    r.add(
                        "policy_image_digests",
                        FAILED,
                        "code no image digest names: " + "; ".join(self.unpinned),
                    )
                else:
                    r.add(
                        "policy_image_digests", PASSED, "every image is pinned by an allowed digest"
                    )

    def quote_age(self, doc: Any) -> None:
        """``quote_age`` (with ``policy.max_quote_age_s``). Only freshness someone vouches for
        counts: the quote made for our request nonce (vLLM layout), or a body ``timestamp``
        under a ``ZG-Quote-Signature`` by the attested signer. A bare JSON timestamp is anyone's
        to write (a replayed report would just carry a new one): the age is then unknown."""
        r, limit = self.r, self.policy.max_quote_age_s
        signed = _passed(r.check("quote_response_signature"))
        ts = doc.get("timestamp") if isinstance(doc, dict) else None
        if isinstance(ts, int | float) and not isinstance(ts, bool):
            ts_s = int(ts / 1000) if ts > 10**11 else int(ts)  # accept milliseconds too
            r.quote_age_s = int(self.now.timestamp()) - ts_s
            r.quote_age_source = (
                "report timestamp, signed by the attested signer (ZG-Quote-Signature)"
                if signed
                else "report timestamp (unauthenticated)"
            )
        else:
            r.quote_age_source = "unknown: a TDX quote carries no timestamp"
        if limit is None:
            return
        if _passed(r.check("report_data_nonce")):
            r.add("quote_age", PASSED, "the quote was made for our request nonce")
        elif r.quote_age_s is None:
            r.add("quote_age", SKIPPED, f"quote age unknown; policy requires at most {limit} s")
        elif not signed:
            r.add(
                "quote_age",
                SKIPPED,
                f"the report's timestamp is not signed (no valid ZG-Quote-Signature), so its age "
                f"({r.quote_age_s} s) is only claimed; policy requires at most {limit} s",
            )
        elif r.quote_age_s > limit or r.quote_age_s < -300:
            r.add("quote_age", FAILED, f"quote age {r.quote_age_s} s outside 0..{limit} s")
        else:
            r.add("quote_age", PASSED, f"quote age {r.quote_age_s} s (signed timestamp)")


def verify_attestation(
    report_json: dict[str, Any] | bytes | str,
    *,
    expected_signer: str | None,
    collateral: Any = None,
    now: datetime | int | None = None,
    policy: AttestationPolicy | None = None,
    root_ca: Any = None,
    output_dir: str | Path | None = None,
    quote_signature: str | None = None,
    file_prefix: str = "",
    provider: str | None = None,
    url: str | None = None,
    expected_nonce: bytes | None = None,
    report_type: str = "combined",
) -> VerificationReport:
    """Verify a ``/v1/quote`` report locally (attestation.md §5.1).

    Args:
        report_json: the body exactly as received (bytes; needed for ``quote_signature``) or parsed.
        expected_signer: the on-chain ``teeSignerAddress`` (or ``TargetTeeAddress``) to find in the
            quote's report_data; ``None`` skips the comparison (the verdict is then not verified
            unless ``policy.require_signer`` is False).
        collateral: ``None`` (TCB check skipped), offline collateral (``QuoteCollateralV3``, dict,
            JSON text, ``Path``), or a source with ``get_collateral(fmspc, ca, *, now)`` such as
            :class:`~broker.attestation.collateral.PccsCollateralFetcher`.
        now: verification time (datetime or Unix seconds); default the current time.
        policy: :class:`AttestationPolicy`; default: require TCB and signer, no allowlists.
        root_ca: trust-root override for tests (certificate, DER or PEM); default the pinned Intel
            SGX Root CA.
        output_dir: when given, ``<prefix>attestation_report.json`` (raw body),
            ``<prefix>quote.bin`` and ``<prefix>verification_report.json`` are written there
            (created if needed).
        quote_signature: the ``ZG-Quote-Signature`` response header, if any.
        file_prefix: prefix of the file names (``"broker_"``, ``"llm_"``).
        provider, url: context recorded in the report.
        expected_nonce: the 32-byte nonce sent with the request (``?nonce=``), checked against a
            vLLM-proxy report_data (``report_data_nonce``); ``None`` when none was sent.
        report_type: ``"combined"``, ``"broker"`` or ``"llm"`` (the SDK's ``reportType``),
            recorded in the report's SDK summary.
    Returns:
        :class:`VerificationReport`; failures are checks, not exceptions.
    Raises:
        OSError: ``output_dir`` cannot be written.
    """
    policy = policy or AttestationPolicy()
    now_dt = _now(now)
    raw_body: bytes | None
    if isinstance(report_json, bytes | bytearray):
        raw_body = bytes(report_json)
    elif isinstance(report_json, str):
        raw_body = report_json.encode()
    else:
        raw_body = None
    report = VerificationReport(
        tee="unknown",
        report_format="unknown",
        provider=provider,
        url=url,
        report_type=report_type,
        expected_signer=expected_signer,
    )
    report.verified_at = int(now_dt.timestamp())
    quote_bytes: bytes | None = None
    try:
        doc: Any = json.loads(raw_body) if raw_body is not None else report_json
    except (ValueError, RecursionError):  # parse_report_body names the problem
        doc = None
    report.evidence["report_body_sha256"] = _sha256(
        raw_body if raw_body is not None else _canonical(report_json)
    )
    run = _Run(report, policy, now_dt, root_ca)
    try:
        try:
            body = parse_report_body(doc if doc is not None else (raw_body or b""))
        except ReportFormatError as exc:
            report.add("report_format", FAILED, str(exc))
            return report
        report.report_format = body.format
        if body.kind is ReportKind.NO_TEE:
            report.tee = "none"
            report.add("tee_present", SKIPPED, f"no TEE: {body.reason}")
            return report
        if body.kind is ReportKind.UNSUPPORTED:
            report.tee = "unsupported"
            report.add("report_format", SKIPPED, body.reason)
            return report
        report.tee = "tdx"
        report.add("report_format", PASSED, f"{body.format} report")
        assert body.quote is not None
        quote_bytes = body.quote
        try:
            quote = parse_quote(body.quote)
        except QuoteFormatError as exc:
            report.add("quote_structure", FAILED, str(exc))
            return report
        quote_bytes = quote.raw
        b = quote.body
        report.evidence.update(
            quote_sha256=_sha256(quote.raw),
            mrtd=b.mr_td.hex(),
            rtmr0=b.rt_mr0.hex(),
            rtmr1=b.rt_mr1.hex(),
            rtmr2=b.rt_mr2.hex(),
            rtmr3=b.rt_mr3.hex(),
            mr_config_id=b.mr_config_id.hex(),
            report_data=b.report_data.hex(),
        )
        report.add(
            "quote_structure",
            PASSED,
            f"TDX quote v{quote.version}, TD {'1.5' if quote.body_type == 3 else '1.0'} body",
            zero_tail=quote.tail_len,
        )
        run.crypto(quote)
        run.tcb(quote, collateral)
        run.td_attributes(quote)
        run.signer(quote, body, expected_signer, raw_body, quote_signature, expected_nonce)
        run.measurements(quote, body)
        run.allowlists(quote)
        run.quote_age(doc)
        return report
    finally:
        if output_dir is not None:
            _save(report, Path(output_dir), file_prefix, raw_body, report_json, quote_bytes)


def _save(
    report: VerificationReport,
    out: Path,
    prefix: str,
    raw_body: bytes | None,
    report_json: Any,
    quote_bytes: bytes | None,
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    body_file = out / f"{prefix}attestation_report.json"
    body_file.write_bytes(raw_body if raw_body is not None else json.dumps(report_json).encode())
    report.files.append(str(body_file))
    if quote_bytes is not None:
        quote_file = out / f"{prefix}quote.bin"
        quote_file.write_bytes(quote_bytes)
        report.files.append(str(quote_file))
    result_file = out / f"{prefix}verification_report.json"
    report.files.append(str(result_file))
    result_file.write_text(report.to_json())
