"""Errors of :mod:`broker.attestation`.

Verification failures of a well-formed report are *not* raised: they become failed checks in the
:class:`broker.attestation.report.VerificationReport`. The classes here cover what cannot be turned
into a check: undecodable input, a fetch that did not happen, bad configuration.
"""

from __future__ import annotations

from broker._exceptions import AttestationError, ConfigError, InputError

__all__ = [
    "AttestationFetchError",
    "AttestationPolicyError",
    "CollateralError",
    "PckChainError",
    "QuoteFormatError",
    "ReportFormatError",
    "SignatureCheckError",
    "TcbEvaluationError",
]


class QuoteFormatError(AttestationError, InputError):
    """The raw TDX quote cannot be parsed: wrong version / key type / TEE type / QE vendor,
    truncated, unknown certification data type, or a non-zero tail (attestation.md §2.1–§2.5)."""


class ReportFormatError(AttestationError, InputError):
    """The ``/v1/quote`` body is not JSON, or a field has the wrong type or encoding (§1.2)."""


class AttestationFetchError(AttestationError):
    """``GET {url}/v1/quote`` (or the separated LLM report) failed: network error or non-2xx."""


class CollateralError(AttestationError):
    """Intel collateral could not be fetched, parsed or cached (attestation.md §2.8, §3.1)."""


class AttestationPolicyError(AttestationError, ConfigError):
    """The attestation policy (allowlists, accepted TCB statuses) is malformed."""


class SignatureCheckError(AttestationError):
    """A quote, QE report or binding check failed; ``str()`` is the reason (§2.8 steps 2–4)."""


class PckChainError(AttestationError):
    """The PCK chain is malformed or does not verify up to the trusted root; ``str()`` is why."""


class TcbEvaluationError(CollateralError):
    """dcap-qvl refused the quote with this collateral (bad signature/chain, CRL revocation,
    expired or not-yet-valid collateral, no matching TCB level, ``Revoked``); ``str()`` is why.

    Attributes:
        code: a :class:`broker.attestation.tcb.TcbFailure` value (``"tcb_revoked"``,
            ``"certificate_revoked"``, ``"collateral_expired"``...), ``"other"`` when unknown.
        status: ``"Revoked"`` for a revoked TCB level or certificate, else ``None``.
    """

    def __init__(self, message: str, *, code: str = "other", status: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
