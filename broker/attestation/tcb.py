"""TCB statuses and the classification of dcap-qvl's refusals (issue 6 hardening).

Route taken: **dcap-qvl stays the TCB authority for real and synthetic collateral alike.** dcap-qvl
0.7.0's ``verify_with_root_ca`` accepts an injected trust root (attestation.md §3.1), and it was
checked to evaluate fully synthetic collateral (TCB Info v3 / QE Identity v2 signed raw ``r‖s`` by
a TCB-signing certificate under a test root, CRLs signed by the root and the PCK CA): it reports
``UpToDate`` / ``SWHardeningNeeded`` / ``ConfigurationNeeded`` / ``OutOfDate`` with the level's
advisories, and refuses ``Revoked`` levels, CRL-listed certificates, expired or not-yet-valid
collateral, collateral signed outside the trusted root, an FMSPC mismatch and "no matching TCB
level". So no second TCB-level matcher is written here; what this module adds is the mapping of
dcap-qvl's refusal messages to stable failure codes (so a revoked certificate, a ``Revoked`` level
or stale collateral is *named* in the report rather than buried in an error string), and the list of
statuses Intel defines (§2.8), used to validate policies.
"""

from __future__ import annotations

import re
from enum import StrEnum

__all__ = ["REVOKED", "TCB_STATUSES", "TcbFailure", "classify_dcap_failure"]

REVOKED = "Revoked"
TCB_STATUSES = frozenset(
    {
        "UpToDate",
        "SWHardeningNeeded",
        "ConfigurationNeeded",
        "ConfigurationAndSWHardeningNeeded",
        "OutOfDate",
        "OutOfDateConfigurationNeeded",
        REVOKED,
    }
)
"""Every TCB status Intel defines for TCB Info / QE Identity levels (attestation.md §2.8)."""


class TcbFailure(StrEnum):
    """Why the DCAP/TCB evaluation refused a quote (the ``failure`` detail of ``tcb_status``)."""

    TCB_REVOKED = "tcb_revoked"
    """The matching TCB level (platform, TDX module or QE) has status ``Revoked``."""
    CERTIFICATE_REVOKED = "certificate_revoked"
    """A certificate of the PCK chain is listed in the PCK CRL or the root CA CRL."""
    COLLATERAL_EXPIRED = "collateral_expired"
    """``now`` is at or after a ``nextUpdate`` of TCB Info, QE Identity or a CRL."""
    COLLATERAL_NOT_YET_VALID = "collateral_not_yet_valid"
    """``now`` is before an ``issueDate`` / ``thisUpdate`` or a certificate's ``notBefore``."""
    BAD_COLLATERAL_SIGNATURE = "bad_collateral_signature"
    """TCB Info or QE Identity bytes do not verify under their issuer certificate."""
    UNTRUSTED_CHAIN = "untrusted_chain"
    """A certificate chain (collateral issuer or PCK) does not verify up to the trusted root."""
    COLLATERAL_MISMATCH = "collateral_mismatch"
    """The collateral is for another platform (FMSPC, PCE ID, TEE type)."""
    NO_MATCHING_TCB_LEVEL = "no_matching_tcb_level"
    """No TCB level is at or below the platform's SVNs (the platform predates every level), or
    the TDX module's / QE's ISVSVN is below every level of its identity."""
    QUOTE_SIGNATURE_INVALID = "quote_signature_invalid"
    """The TD quote body is not signed by the attestation key the quote carries."""
    QE_REPORT_SIGNATURE_INVALID = "qe_report_signature_invalid"
    """The QE report is not signed by the PCK leaf key of the chain the collateral is checked
    against (the QE report was signed by another key: a forged or spliced quote)."""
    QE_REPORT_BINDING_MISMATCH = "qe_report_binding_mismatch"
    """The QE report's report_data is not sha256(attestation key ‖ QE auth data)."""
    TDX_MODULE_MISMATCH = "tdx_module_mismatch"
    """The TDX module identity (MRSIGNERSEAM, SEAMATTRIBUTES) does not match the TCB Info."""
    TD_ATTRIBUTES = "td_attributes"
    """The TD's attributes are refused: DEBUG or reserved bits set, SEPT_VE_DISABLE clear,
    migratable, or a service TD bound (MRSERVICETD not zero)."""
    QE_IDENTITY_MISMATCH = "qe_identity_mismatch"
    """The QE report does not match the QE Identity (MRSIGNER, ISVPRODID, attributes...)."""
    OTHER = "other"
    """Any other refusal; the reason carries dcap-qvl's message."""


# Checked in order: the first pattern found in the lower-cased message wins.
_RULES: tuple[tuple[str, TcbFailure, str], ...] = (
    (
        r"tcb status is invalid: revoked|status.*\brevoked\b",
        TcbFailure.TCB_REVOKED,
        "the TCB level is Revoked",
    ),
    (
        r"certrevoked|certificate.*revoked|revoked.*cert",
        TcbFailure.CERTIFICATE_REVOKED,
        "a PCK-chain certificate is revoked (listed in a CRL)",
    ),
    (r"expired", TcbFailure.COLLATERAL_EXPIRED, "the collateral (or a certificate) has expired"),
    (
        r"in the future|notvalidyet|not yet valid",
        TcbFailure.COLLATERAL_NOT_YET_VALID,
        "the collateral is not yet valid",
    ),
    (
        r"signature is invalid for (tcb_info|qe_identity)",
        TcbFailure.BAD_COLLATERAL_SIGNATURE,
        "the collateral's signature does not verify",
    ),
    (
        r"certificate chain|unknownissuer|invalidsignatureforpublickey|root ca",
        TcbFailure.UNTRUSTED_CHAIN,
        "a certificate chain does not verify up to the trusted root",
    ),
    (
        r"fmspc mismatch|pce ?id mismatch|tee type|mismatch.*(fmspc|pce)",
        TcbFailure.COLLATERAL_MISMATCH,
        "the collateral is for another platform",
    ),
    (
        r"no matching tcb level|is below minimum required",
        TcbFailure.NO_MATCHING_TCB_LEVEL,
        "no TCB level matches the platform (below every known level)",
    ),
    (
        r"signature is invalid for qe_report",
        TcbFailure.QE_REPORT_SIGNATURE_INVALID,
        "the QE report is not signed by the PCK certificate's key",
    ),
    (
        r"qe report hash mismatch|invalid qe auth data",
        TcbFailure.QE_REPORT_BINDING_MISMATCH,
        "the QE report does not bind the quote's attestation key",
    ),
    (
        r"isv enclave report signature is invalid",
        TcbFailure.QUOTE_SIGNATURE_INVALID,
        "the quote is not signed by its attestation key",
    ),
    (
        r"tdx module (mrsigner|seamattributes)|tdx module identity",
        TcbFailure.TDX_MODULE_MISMATCH,
        "the TDX module does not match the TCB Info's module identity",
    ),
    (
        r"debug mode is enabled|td attributes|sept_ve_disable|td migration|mr service td",
        TcbFailure.TD_ATTRIBUTES,
        "the TD's attributes are refused (debug, migratable, reserved bits or no SEPT_VE_DISABLE)",
    ),
    (
        r"qe|mrsigner|isvprodid|miscselect|attributes",
        TcbFailure.QE_IDENTITY_MISMATCH,
        "the QE report does not match the QE identity",
    ),
)


def classify_dcap_failure(message: str) -> tuple[TcbFailure, str]:
    """Map a dcap-qvl refusal message to a :class:`TcbFailure` and a one-line summary.

    Args:
        message: ``str()`` of the ``ValueError`` raised by ``dcap_qvl.verify`` /
            ``verify_with_root_ca`` (e.g. ``"Verification failed: TCB status is invalid: Revoked"``,
            ``"...Caused by: CertRevoked"``, ``"...CrlExpired {...}"``).
    Returns:
        ``(code, summary)``; unknown messages give ``(TcbFailure.OTHER, "unclassified
        refusal")``. Never raises.
    """
    text = " ".join(message.split()).lower()
    for pattern, code, summary in _RULES:
        if re.search(pattern, text):
            return code, summary
    return TcbFailure.OTHER, "unclassified refusal"
