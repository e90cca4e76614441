"""``verify_service``: download a provider's attestation report(s) and verify them locally.

The reference SDK (user-broker.md §9) compares only unauthenticated JSON fields and leaves the quote
to a manual ``docker run``. Here every report is verified by
:func:`broker.attestation.verify_attestation` (quote, PCK chain, TCB, signer, event log, compose),
so no manual step is needed.

Report selection follows user-broker.md §9.1 step 3 (with §8.2 for the signer address):

* combined (``TargetSeparated`` not ``true``): ``GET {url}/v1/quote`` → ``attestation_report.json``,
  signer ``teeSignerAddress``;
* separated, decentralized: the broker report (``broker_`` prefix, signer ``teeSignerAddress``) and
  the LLM node's report ``GET {url}/v1/proxy/attestation/report?model=<model>`` (``llm_`` prefix,
  signer ``TargetTeeAddress``), attached as ``sub_reports["llm"]`` and counted in the verdict;
* separated, centralized [0.8]: the broker report only.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import httpx

from broker.attestation import (
    AttestationError,
    AttestationPolicy,
    VerificationReport,
    fetch_quote_report,
    verify_attestation,
)
from broker.attestation.report import CheckStatus, VerificationStep
from broker.attestation.report_formats import json_document

__all__ = [
    "ServiceLike",
    "ServiceLookup",
    "StepCallback",
    "VerificationStep",
    "service_lookup",
    "verify_service",
]


class ServiceLike(Protocol):
    """What ``verify_service`` reads from the on-chain ``Service`` (``getService``)."""

    url: str
    tee_signer_address: str
    additional_info: str


ServiceLookup = Callable[[str], ServiceLike]
"""``get_service(provider_address) -> ServiceLike`` (e.g. ``InferenceBroker.get_service``)."""

StepCallback = Callable[[VerificationStep], None]
"""``on_step(step)``: receives each progress line of :func:`verify_service` as it happens."""


def service_lookup(broker_or_lookup: Any) -> ServiceLookup:
    """The ``get_service(provider)`` of an inference broker, of a broker (its ``inference``), or
    ``broker_or_lookup`` itself when it is callable.

    Raises:
        TypeError: none of these.
    """
    if hasattr(broker_or_lookup, "get_service"):
        return broker_or_lookup.get_service
    inference = getattr(broker_or_lookup, "inference", None)
    if inference is not None and hasattr(inference, "get_service"):
        return inference.get_service
    if callable(broker_or_lookup):
        return broker_or_lookup
    raise TypeError("verify_service needs a get_service(provider) callable or an object with one")


def _additional_info(text: str) -> dict[str, Any]:
    if not text:
        return {}
    return json_document(text, "the service's additionalInfo", dict, decode=True)


class _Steps:
    """Collects the :class:`VerificationStep` lines and passes each to ``on_step`` as it happens."""

    def __init__(self, on_step: StepCallback | None) -> None:
        self.lines: list[VerificationStep] = []
        self.on_step = on_step

    def __call__(self, type_: str, message: str) -> None:
        step = VerificationStep(type_, message)
        self.lines.append(step)
        if self.on_step is not None:
            self.on_step(step)


def _report_steps(emit: _Steps, report: VerificationReport) -> None:
    """The per-check lines of one report (our addition between the SDK's steps 3 and 4)."""
    label = report.report_type
    if report.tee != "tdx":
        reason = report.checks[0].reason if report.checks else report.report_format
        emit("warning", f"⚠️  {label} report is not a TDX report: {reason}")
        return
    for c in report.checks:
        if c.status is CheckStatus.PASSED:
            emit("success", f"✅ {label}: {c.name}: {c.reason}")
        elif c.status is CheckStatus.FAILED:
            emit("error", f"❌ {label}: {c.name}: {c.reason}")
        else:
            emit("warning" if c.required else "info", f"⚠️  {label}: {c.name}: {c.reason}")


def _summary_steps(emit: _Steps, report: VerificationReport) -> None:
    """The SDK's steps 4–6 (signer, compose, summary, images) from the report's summary."""
    emit("step", "🔑 Step 4: TEE Signer Address Verification")
    signer = report.signer_verification
    for entry in signer["report_addresses"]:
        sub = report if entry["report_type"] == report.report_type else None
        sub = sub or report.sub_reports.get(entry["report_type"])
        expected = sub.expected_signer if sub is not None else None
        if entry["match"]:
            emit(
                "success",
                f"✅ {entry['report_type']} report: signer {entry['address']} "
                f"matches the contract ({expected})",
            )
        else:
            emit(
                "error",
                f"❌ {entry['report_type']} report: signer {entry['address']} "
                f"does not match the contract ({expected})",
            )
    emit("step", "🔍 Step 5: DStack Verification Process")
    compose = report.compose_verification
    for report_type, detail in compose["details"].items():
        if "error" in detail:
            emit("error", f"❌ {report_type} report: compose check: {detail['error']}")
        else:
            emit(
                "success",
                f"✅ {report_type} report: compose hash {detail['calculated_hash']} "
                "matches the replayed compose-hash event",
            )
    matches = sum(1 for e in signer["report_addresses"] if e["match"])
    emit("step", "📋 Automated Verification Summary")
    emit(
        "info",
        "Docker Compose Verification: " + ("✅ PASSED" if compose["passed"] else "❌ FAILED"),
    )
    emit(
        "info",
        "TEE Signer Address Verification: "
        + ("✅ PASSED" if signer["all_match"] else "❌ FAILED")
        + f" ({matches}/{len(signer['report_addresses'])} matches)",
    )
    emit("info", f"Verdict (quote, Intel chain, TCB, signer, event log, compose): {report.verdict}")
    emit("step", "🖼️  Step 6: Image Verification")
    if not report.docker_images:
        emit("warning", "⚠️  No docker images found in the verified app compose")
    for image in report.docker_images:
        tag = " (0G Broker)" if "broker" in image or "0g-serving" in image else ""
        emit("info", f"   {image}{tag}")


def verify_service(
    broker_or_service_lookup: Any,
    provider: str,
    output_dir: str | Path | None = None,
    *,
    on_step: StepCallback | None = None,
    collateral: Any = None,
    now: datetime | int | None = None,
    policy: AttestationPolicy | None = None,
    root_ca: Any = None,
    client: httpx.Client | None = None,
    timeout: float = 30.0,
) -> VerificationReport:
    """Verify a provider's TEE attestation end to end.

    Args:
        broker_or_service_lookup: ``get_service(provider)`` callable, or an object with a
            ``get_service`` method (an inference broker), returning a :class:`ServiceLike`
            (``.url``, ``.tee_signer_address``, ``.additional_info`` JSON text; ``.model`` is used
            for the separated LLM report).
        provider: the provider's address.
        output_dir: when given, the raw report(s), quote(s) and result JSON are saved there.
        on_step: called with each :class:`VerificationStep` as it happens (the TS SDK's
            ``verifyService(provider, dir, onLog)`` callback; same step titles, user-broker.md
            §9.1); the lines are also kept in ``report.steps``.
        collateral: offline collateral or a collateral source (see ``verify_attestation``); ``None``
            leaves the TCB status unevaluated (and the verdict not verified under the default
            policy).
        now: verification time (datetime or Unix seconds); default now.
        policy: :class:`AttestationPolicy`; default requires TCB and signer.
        root_ca: trust-root override (tests only).
        client: ``httpx.Client`` to reuse; timeout: seconds per request.
    Returns:
        the broker/combined :class:`VerificationReport` (with ``sub_reports["llm"]`` for separated
        decentralized providers). Besides the typed checks it exposes the SDK's summary:
        ``signer_verification`` (``all_match``), ``compose_verification`` (``passed``) and
        ``docker_images``.
    Raises:
        AttestationFetchError: ``GET {url}/v1/quote`` failed (network or non-2xx).
        ReportFormatError: the service's ``additionalInfo`` is not a JSON object.
        BrokerError: whatever ``get_service`` raises (contract read failure, unknown provider).
        Each error is first reported as an ``error`` step ``❌ TEE verification failed: ...``.
    """
    emit = _Steps(on_step)
    try:
        report = _verify_service(
            emit,
            broker_or_service_lookup,
            provider,
            output_dir,
            collateral=collateral,
            now=now,
            policy=policy,
            root_ca=root_ca,
            client=client,
            timeout=timeout,
        )
    except Exception as exc:
        emit("error", f"❌ TEE verification failed: {exc}")
        raise
    return report


def _verify_service(
    emit: _Steps,
    broker_or_service_lookup: Any,
    provider: str,
    output_dir: str | Path | None,
    *,
    collateral: Any,
    now: datetime | int | None,
    policy: AttestationPolicy | None,
    root_ca: Any,
    client: httpx.Client | None,
    timeout: float,
) -> VerificationReport:
    emit("step", f"🔍 Starting TEE verification for provider: {provider}")
    emit("step", "📋 Step 1: Retrieving service information from contract...")
    service = service_lookup(broker_or_service_lookup)(provider)
    emit("step", "🔧 Step 2: Parsing and analyzing service configuration...")
    info = _additional_info(getattr(service, "additional_info", "") or "")
    separated = info.get("TargetSeparated") is True
    centralized = info.get("ProviderType") == "centralized"
    emit("info", f"Provider URL: {service.url}")
    emit("info", f"TEE verifier: {info.get('TEEVerifier') or 'dstack'}")
    if info.get("ImageName") or info.get("ImageDigest"):
        emit("info", f"Image: {info.get('ImageName', '')} {info.get('ImageDigest', '')}".rstrip())
    if separated and centralized:
        emit("info", "Architecture: Centralized (separated) — Required Reports: 1 (Broker only)")
    elif separated:
        emit("info", "Architecture: Separated — Required Reports: 2 (Broker + LLM)")
    else:
        emit("info", "Architecture: Combined — Required Reports: 1")
    common: dict[str, Any] = {
        "collateral": collateral,
        "now": now,
        "policy": policy,
        "root_ca": root_ca,
        "output_dir": output_dir,
    }

    emit("step", "📥 Step 3: Downloading attestation reports...")
    fetched = fetch_quote_report(service.url, client=client, timeout=timeout)
    emit(
        "info",
        f"Downloaded the {'broker' if separated else 'combined'} report from "
        f"{fetched.url} ({len(fetched.body)} bytes)",
    )
    report = verify_attestation(
        fetched.body,
        expected_signer=service.tee_signer_address,
        quote_signature=fetched.quote_signature,
        file_prefix="broker_" if separated else "",
        provider=provider,
        url=fetched.url,
        report_type="broker" if separated else "combined",
        **common,
    )
    _report_steps(emit, report)
    if separated and not centralized:
        target = info.get("TargetTeeAddress") or None
        model = getattr(service, "model", "") or ""
        nonce = secrets.token_bytes(32)
        try:
            llm = fetch_quote_report(
                service.url,
                client=client,
                timeout=timeout,
                path="/v1/proxy/attestation/report",
                params={"model": model, "nonce": nonce.hex()},
            )
        except AttestationError as exc:
            sub = VerificationReport(
                tee="unknown",
                report_format="unknown",
                provider=provider,
                report_type="llm",
                expected_signer=target,
            )
            sub.add("fetch", CheckStatus.FAILED, str(exc))
            emit("error", f"❌ llm report: {exc}")
        else:
            emit("info", f"Downloaded the llm report from {llm.url} ({len(llm.body)} bytes)")
            sub = verify_attestation(
                llm.body,
                expected_signer=target,
                file_prefix="llm_",
                provider=provider,
                url=llm.url,
                expected_nonce=nonce,
                report_type="llm",
                **common,
            )
            _report_steps(emit, sub)
        report.sub_reports["llm"] = sub
    _summary_steps(emit, report)
    report.steps = emit.lines
    if output_dir is not None:  # rewrite the result so it includes the LLM report and the steps
        name = "broker_verification_report.json" if separated else "verification_report.json"
        (Path(output_dir) / name).write_text(report.to_json())
    return report
