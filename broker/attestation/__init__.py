"""broker.attestation: full local verification of a provider's dstack / Intel TDX attestation.

Entry point: :func:`verify_attestation` (one ``/v1/quote`` body) and :func:`fetch_quote_report`.
The reference SDK only compares unauthenticated JSON fields; here the quote itself is verified
(signatures, PCK chain to the pinned Intel SGX Root CA, TCB status with dcap-qvl), and the signer,
event log and compose are tied to it (attestation.md §5).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from broker._lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover - names for type checkers; loaded on first use
    from broker.attestation.collateral import (
        CollateralCache,
        PccsCollateralFetcher,
        TcbEvaluation,
        evaluate_tcb,
        load_collateral,
    )
    from broker.attestation.errors import (
        AttestationError,
        AttestationFetchError,
        AttestationPolicyError,
        CollateralError,
        QuoteFormatError,
        ReportFormatError,
        TcbEvaluationError,
    )
    from broker.attestation.policy import (
        AttestationPolicy,
        load_policy,
    )
    from broker.attestation.quote import (
        Quote,
        parse_quote,
    )
    from broker.attestation.report import (
        CheckResult,
        CheckStatus,
        Verdict,
        VerificationReport,
    )
    from broker.attestation.tcb import (
        TCB_STATUSES,
        TcbFailure,
    )
    from broker.attestation.verifier import (
        FetchedReport,
        fetch_quote_report,
        signer_from_report_data,
        verify_attestation,
    )

__all__ = [
    "TCB_STATUSES",
    "AttestationError",
    "AttestationFetchError",
    "AttestationPolicy",
    "AttestationPolicyError",
    "CheckResult",
    "CheckStatus",
    "CollateralCache",
    "CollateralError",
    "FetchedReport",
    "PccsCollateralFetcher",
    "Quote",
    "QuoteFormatError",
    "ReportFormatError",
    "TcbEvaluation",
    "TcbEvaluationError",
    "TcbFailure",
    "Verdict",
    "VerificationReport",
    "evaluate_tcb",
    "fetch_quote_report",
    "load_collateral",
    "load_policy",
    "parse_quote",
    "signer_from_report_data",
    "verify_attestation",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "CollateralCache": "collateral",
        "PccsCollateralFetcher": "collateral",
        "TcbEvaluation": "collateral",
        "evaluate_tcb": "collateral",
        "load_collateral": "collateral",
        "AttestationError": "errors",
        "AttestationFetchError": "errors",
        "AttestationPolicyError": "errors",
        "CollateralError": "errors",
        "QuoteFormatError": "errors",
        "ReportFormatError": "errors",
        "TcbEvaluationError": "errors",
        "AttestationPolicy": "policy",
        "load_policy": "policy",
        "Quote": "quote",
        "parse_quote": "quote",
        "CheckResult": "report",
        "CheckStatus": "report",
        "Verdict": "report",
        "VerificationReport": "report",
        "TCB_STATUSES": "tcb",
        "TcbFailure": "tcb",
        "FetchedReport": "verifier",
        "fetch_quote_report": "verifier",
        "signer_from_report_data": "verifier",
        "verify_attestation": "verifier",
    },
)
