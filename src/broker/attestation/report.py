"""The result of an attestation verification: one entry per check, evidence digests, the quote's
age, and an overall verdict that fails closed (attestation.md §5.1 step 11: "never a bare bool").
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = ["CheckResult", "CheckStatus", "Verdict", "VerificationReport"]


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
        }

    def to_json(self, *, indent: int | None = 2) -> str:
        """The report as JSON text."""
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)
