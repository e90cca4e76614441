"""The result of an attestation verification: one entry per check, evidence digests, the quote's
age, and an overall verdict that fails closed (attestation.md §5.1 step 11: "never a bare bool").
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["CheckResult", "CheckStatus", "Verdict", "VerificationReport", "VerificationStep"]

STEP_TYPES = ("info", "success", "error", "warning", "step")


@dataclass(frozen=True)
class VerificationStep:
    """One progress line of ``verify_service``, as the TS SDK's ``onLog`` receives it
    (user-broker.md §9): ``type`` is ``"info"``, ``"success"``, ``"error"``, ``"warning"`` or
    ``"step"``; ``message`` is the text the CLI prints."""

    type: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"type": self.type, "message": self.message}


class CheckStatus(StrEnum):
    """Outcome of one check."""

    PASSED = "passed"
    FAILED = "failed"
    SKIPPED = "skipped"


class Verdict(StrEnum):
    """Overall outcome.

    ``verified``: every required check passed and none failed. ``not_verified``: nothing failed but
    a required check was skipped, or the report is not a TEE report (no TEE / unsupported format).
    ``failed``: at least one check failed.
    """

    VERIFIED = "verified"
    NOT_VERIFIED = "not_verified"
    FAILED = "failed"


@dataclass(frozen=True)
class CheckResult:
    """One check: ``name`` (stable identifier, e.g. ``quote_signature``), ``status``, ``reason``
    (one line; why it failed or was skipped, or what passed), ``required`` (a skip blocks the
    verdict), and ``details`` (JSON-serialisable values)."""

    name: str
    status: CheckStatus
    reason: str
    required: bool = True
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": str(self.status),
            "required": self.required,
            "reason": self.reason,
            "details": self.details,
        }


@dataclass
class VerificationReport:
    """Everything a verification established.

    Attributes:
        tee: ``"tdx"`` (a dstack/TDX report), ``"none"`` (no TEE) or ``"unsupported"``.
        report_format: the recognised body format (see ``report_formats``).
        checks: the checks, in the order run.
        evidence: hex SHA-256 digests of the inputs (``report_body``, ``quote``, ``event_log``,
            ``app_compose``) plus quote facts (``mrtd``, ``rtmr0``–``rtmr3``, ``report_data``,
            ``fmspc``).
        signer: the TEE signer address named by the verified quote body (EIP-55), or ``None``.
        compose_hash: the compose hash from the replayed event log, or ``None``.
        images: image references from the app compose.
        tcb_status, advisory_ids: dcap-qvl's result, when evaluated.
        quote_age_s: seconds between the report's timestamp and ``now``, or ``None`` when unknown
            (a TDX quote carries no time); ``quote_age_source`` says where it came from.
        verified_at: ``now`` used, Unix seconds.
        provider, url: context, when known.
        sub_reports: related reports (e.g. ``"llm"`` for a separated provider); they count in the
            verdict.
        files: paths written to ``output_dir``.
        report_type: ``"combined"``, ``"broker"`` or ``"llm"`` (the SDK's ``reportType``).
        expected_signer: the on-chain address the quote's signer was compared with, or ``None``.
        steps: the progress lines ``verify_service`` emitted (:class:`VerificationStep`).

    The SDK's summary (user-broker.md §9.2) is exposed beside the typed checks as
    :attr:`signer_verification`, :attr:`compose_verification` and :attr:`docker_images`, derived
    from the checks of this report and its sub-reports.
    """

    tee: str
    report_format: str
    checks: list[CheckResult] = field(default_factory=list)
    evidence: dict[str, str] = field(default_factory=dict)
    signer: str | None = None
    compose_hash: str | None = None
    images: list[str] = field(default_factory=list)
    tcb_status: str | None = None
    advisory_ids: list[str] = field(default_factory=list)
    quote_age_s: int | None = None
    quote_age_source: str = "unknown"
    verified_at: int = 0
    provider: str | None = None
    url: str | None = None
    sub_reports: dict[str, VerificationReport] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    report_type: str = "combined"
    expected_signer: str | None = None
    steps: list[VerificationStep] = field(default_factory=list)

    def _all_reports(self) -> list[VerificationReport]:
        return [self, *self.sub_reports.values()]

    @property
    def signer_verification(self) -> dict[str, Any]:
        """The SDK's ``signerVerification``: ``{"contract_address", "report_addresses":
        [{"report_type", "address", "match"}], "all_match"}``.

        One entry per report compared with an on-chain address (the broker/combined report with
        ``teeSignerAddress``; a separated LLM report with ``TargetTeeAddress`` when that is set,
        which the SDK skips). ``address`` is the signer named by the *quote* (``None`` when its
        report_data carries none); ``match`` is whether ``report_data_signer`` passed.
        ``all_match`` = every entry matches and there is at least one (as the SDK).
        """
        entries = []
        for rep in self._all_reports():
            if rep.expected_signer is None or rep.tee != "tdx":
                if rep is self:  # the SDK always checks the broker/combined report
                    entries.append(
                        {"report_type": rep.report_type, "address": rep.signer, "match": False}
                    )
                continue
            check = rep.check("report_data_signer")
            entries.append(
                {
                    "report_type": rep.report_type,
                    "address": rep.signer,
                    "match": check is not None and check.status is CheckStatus.PASSED,
                }
            )
        return {
            "contract_address": self.expected_signer,
            "report_addresses": entries,
            "all_match": bool(entries) and all(e["match"] for e in entries),
        }

    @property
    def compose_verification(self) -> dict[str, Any]:
        """The SDK's ``composeVerification``: ``{"passed", "details": {<report_type>:
        {"calculated_hash"?, "event_log_hash"?, "error"?}}}``.

        Ours is stronger than the SDK's: the compose-hash event is taken from the event log
        *replayed against the quote's RTMR3*, first before ``system-ready``. A report without an
        event log is listed with an error and not counted (the SDK skips it with a warning);
        ``passed`` = at least one report checked and every checked one passed.
        """
        details: dict[str, dict[str, Any]] = {}
        counted: list[bool] = []
        for rep in self._all_reports():
            check = rep.check("compose_hash")
            entry: dict[str, Any] = {}
            if check is None:
                entry["error"] = "no TDX report: compose not checked"
            else:
                calc = check.details.get("computed")
                event = check.details.get("event") or check.details.get("event_compose_hash")
                if calc:
                    entry["calculated_hash"] = calc
                if event:
                    entry["event_log_hash"] = event
                if check.status is CheckStatus.PASSED:
                    counted.append(True)
                else:
                    entry["error"] = check.reason
                    if check.status is CheckStatus.FAILED or "app_compose" in check.reason:
                        counted.append(False)
            details[rep.report_type] = entry
        return {"passed": bool(counted) and all(counted), "details": details}

    @property
    def docker_images(self) -> list[str]:
        """Image references of every report's verified app compose, without duplicates (the
        SDK's ``dockerImages``, parsed from the compose YAML rather than scraped by regex)."""
        seen: dict[str, None] = {}
        for rep in self._all_reports():
            for image in rep.images:
                seen.setdefault(image, None)
        return list(seen)

    def add(
        self,
        name: str,
        status: CheckStatus,
        reason: str,
        *,
        required: bool = True,
        **details: Any,
    ) -> CheckResult:
        """Append a check and return it."""
        result = CheckResult(name, status, reason, required, details)
        self.checks.append(result)
        return result

    def check(self, name: str) -> CheckResult | None:
        """The check called ``name``, or ``None``."""
        return next((c for c in self.checks if c.name == name), None)

    @property
    def failed_checks(self) -> list[CheckResult]:
        return [c for c in self.checks if c.status is CheckStatus.FAILED]

    @property
    def verdict(self) -> Verdict:
        """Fails closed: ``failed`` if any check (or sub-report) failed; ``not_verified`` if not a
        TDX report, if there are no checks, or a required check was skipped; else ``verified``."""
        subs = [r.verdict for r in self.sub_reports.values()]
        if self.failed_checks or Verdict.FAILED in subs:
            return Verdict.FAILED
        if (
            self.tee != "tdx"
            or not self.checks
            or any(c.required and c.status is not CheckStatus.PASSED for c in self.checks)
            or Verdict.NOT_VERIFIED in subs
        ):
            return Verdict.NOT_VERIFIED
        return Verdict.VERIFIED

    @property
    def verified(self) -> bool:
        """``verdict == verified``."""
        return self.verdict is Verdict.VERIFIED

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict (what :meth:`to_json` writes)."""
        return {
            "verdict": str(self.verdict),
            "tee": self.tee,
            "report_format": self.report_format,
            "provider": self.provider,
            "url": self.url,
            "verified_at": self.verified_at,
            "signer": self.signer,
            "compose_hash": self.compose_hash,
            "images": self.images,
            "tcb_status": self.tcb_status,
            "advisory_ids": self.advisory_ids,
            "quote_age_s": self.quote_age_s,
            "quote_age_source": self.quote_age_source,
            "evidence": self.evidence,
            "checks": [c.to_dict() for c in self.checks],
            "sub_reports": {k: v.to_dict() for k, v in self.sub_reports.items()},
            "files": self.files,
            "report_type": self.report_type,
            "signer_verification": self.signer_verification,
            "compose_verification": self.compose_verification,
            "docker_images": self.docker_images,
            "steps": [step.to_dict() for step in self.steps],
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        """The report as JSON text."""
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)
