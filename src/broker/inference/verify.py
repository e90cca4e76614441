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
from broker.attestation.report import CheckStatus
from broker.attestation.report_formats import json_document

__all__ = ["ServiceLike", "ServiceLookup", "service_lookup", "verify_service"]


class ServiceLike(Protocol):
    """What ``verify_service`` reads from the on-chain ``Service`` (``getService``)."""

    url: str
    tee_signer_address: str
    additional_info: str


ServiceLookup = Callable[[str], ServiceLike]
"""``get_service(provider_address) -> ServiceLike`` (e.g. ``InferenceBroker.get_service``)."""


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


def verify_service(
    broker_or_service_lookup: Any,
    provider: str,
    output_dir: str | Path | None = None,
    *,
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
        collateral: offline collateral or a collateral source (see ``verify_attestation``); ``None``
            leaves the TCB status unevaluated (and the verdict not verified under the default
            policy).
        now: verification time (datetime or Unix seconds); default now.
        policy: :class:`AttestationPolicy`; default requires TCB and signer.
        root_ca: trust-root override (tests only).
        client: ``httpx.Client`` to reuse; timeout: seconds per request.
    Returns:
        the broker/combined :class:`VerificationReport` (with ``sub_reports["llm"]`` for separated
        decentralized providers).
    Raises:
        AttestationFetchError: ``GET {url}/v1/quote`` failed (network or non-2xx).
        ReportFormatError: the service's ``additionalInfo`` is not a JSON object.
        BrokerError: whatever ``get_service`` raises (contract read failure, unknown provider).
    """
    service = service_lookup(broker_or_service_lookup)(provider)
    info = _additional_info(getattr(service, "additional_info", "") or "")
    separated = info.get("TargetSeparated") is True
    centralized = info.get("ProviderType") == "centralized"
    common: dict[str, Any] = {
        "collateral": collateral,
        "now": now,
        "policy": policy,
        "root_ca": root_ca,
        "output_dir": output_dir,
    }

    fetched = fetch_quote_report(service.url, client=client, timeout=timeout)
    report = verify_attestation(
        fetched.body,
        expected_signer=service.tee_signer_address,
        quote_signature=fetched.quote_signature,
        file_prefix="broker_" if separated else "",
        provider=provider,
        url=fetched.url,
        **common,
    )
    if separated and not centralized:
        target = info.get("TargetTeeAddress") or None
        model = getattr(service, "model", "") or ""
        try:
            llm = fetch_quote_report(
                service.url,
                client=client,
                timeout=timeout,
                path="/v1/proxy/attestation/report",
                params={"model": model},
            )
        except AttestationError as exc:
            sub = VerificationReport(tee="unknown", report_format="unknown", provider=provider)
            sub.add("fetch", CheckStatus.FAILED, str(exc))
        else:
            sub = verify_attestation(
                llm.body,
                expected_signer=target,
                file_prefix="llm_",
                provider=provider,
                url=llm.url,
                **common,
            )
        report.sub_reports["llm"] = sub
        if output_dir is not None:  # rewrite the result so it includes the LLM report
            (Path(output_dir) / "broker_verification_report.json").write_text(report.to_json())
    return report
