"""TCB states end to end: synthetic quotes + synthetic Intel-format collateral signed by the
synthetic root, evaluated by dcap-qvl (``verify_with_root_ca``) inside ``verify_attestation`` (issue
6: OutOfDate / Revoked / stale or untrusted collateral are reported, never passed silently)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from attestation_collateral_synth import (
    PCK_CPU_SVN,
    PCK_PCE_SVN,
    QE_ISVSVN,
    QUOTE_TEE_TCB_SVN,
    SyntheticCollateral,
    platform_level,
    simple_level,
)
from attestation_synth import NOW
from cryptography.hazmat.primitives.asymmetric import ec

from broker.attestation import (
    AttestationPolicy,
    AttestationPolicyError,
    TcbEvaluationError,
    TcbFailure,
    Verdict,
    load_collateral,
    verify_attestation,
)
from broker.attestation.collateral import evaluate_tcb
from broker.attestation.report import CheckStatus
from broker.attestation.tcb import classify_dcap_failure

SA = ["INTEL-SA-00837", "INTEL-SA-01079"]


@pytest.fixture(scope="module")
def col(synth) -> SyntheticCollateral:
    return SyntheticCollateral(synth.pki)


@pytest.fixture(scope="module")
def body(synth) -> bytes:
    return json.dumps(synth.report()).encode()


def _verify(synth, body, collateral, *, policy=None, **kw):
    kw.setdefault("root_ca", synth.pki.root_der)
    kw.setdefault("now", NOW)
    return verify_attestation(
        body, expected_signer=synth.signer, collateral=collateral, policy=policy, **kw
    )


def _bump(values: list[int], index: int) -> list[int]:
    out = list(values)
    out[index] += 1
    return out


# --- 1. UpToDate: the first fully verified synthetic run ------------------------------------------
def test_up_to_date_collateral_gives_a_fully_verified_report(synth, body, col):
    report = _verify(synth, body, col.build())
    tcb = report.check("tcb_status")
    assert tcb.status is CheckStatus.PASSED and tcb.required, tcb
    assert report.tcb_status == "UpToDate" and report.advisory_ids == []
    assert tcb.details["platform_status"]["status"] == "UpToDate"
    assert tcb.details["qe_status"]["status"] == "UpToDate"
    assert tcb.details["collateral_expiry"].startswith("2026-06-30")
    assert report.check("report_data_signer").status is CheckStatus.PASSED
    assert report.verdict is Verdict.VERIFIED and report.verified
    assert json.loads(report.to_json())["tcb_status"] == "UpToDate"


def test_synthetic_collateral_is_refused_under_the_pinned_intel_root(synth, body, col):
    report = _verify(synth, body, col.build(), root_ca=None)
    assert report.check("tcb_status").status is CheckStatus.FAILED
    assert report.verdict is Verdict.FAILED


def test_collateral_source_protocol_gets_the_quote_platform(synth, body, col):
    asked = []

    class Source:
        def get_collateral(self, fmspc, ca, *, now):
            asked.append((fmspc, ca, now))
            return load_collateral(col.build())

    report = _verify(synth, body, Source())
    assert asked == [("00906EA10000", "platform", NOW)]
    assert report.verified


# --- 2. OutOfDate ---------------------------------------------------------------------------------
OUT_OF_DATE_CASES = {
    # the newest platform level needs a higher SVN than the quote's; the next one is OutOfDate
    "tdx_late_microcode": {
        "levels": [
            platform_level("UpToDate", tdx=_bump(QUOTE_TEE_TCB_SVN, 2)),
            platform_level("OutOfDate", advisories=SA),
        ]
    },
    "sgx_cpusvn": {
        "levels": [
            platform_level("UpToDate", sgx=_bump(PCK_CPU_SVN, 0)),
            platform_level("OutOfDate", advisories=SA),
        ]
    },
    "pcesvn": {
        "levels": [
            platform_level("UpToDate", pce_svn=PCK_PCE_SVN + 1),
            platform_level("OutOfDate", advisories=SA),
        ]
    },
    "tdx_module": {
        "module_levels": [
            simple_level("UpToDate", QUOTE_TEE_TCB_SVN[0] + 1),
            simple_level("OutOfDate", QUOTE_TEE_TCB_SVN[0], advisories=SA),
        ]
    },
    "qe_identity": {
        "qe_levels": [
            simple_level("UpToDate", QE_ISVSVN + 1),
            simple_level("OutOfDate", QE_ISVSVN, advisories=SA),
        ]
    },
}


@pytest.mark.parametrize("case", sorted(OUT_OF_DATE_CASES))
def test_out_of_date_fails_by_default_and_reports_status_and_advisories(synth, body, col, case):
    report = _verify(synth, body, col.build(**OUT_OF_DATE_CASES[case]))
    tcb = report.check("tcb_status")
    assert tcb.status is CheckStatus.FAILED, tcb
    assert report.verdict is Verdict.FAILED
    assert report.tcb_status == "OutOfDate"
    assert sorted(report.advisory_ids) == SA
    assert tcb.details["tcb_status"] == "OutOfDate" and sorted(tcb.details["advisory_ids"]) == SA
    assert "OutOfDate is not accepted" in tcb.reason and SA[0] in tcb.reason


def test_out_of_date_accepted_by_policy_still_reports_advisories(synth, body, col):
    collateral = col.build(**OUT_OF_DATE_CASES["tdx_late_microcode"])
    lenient = AttestationPolicy(accepted_tcb_statuses={"UpToDate", "OutOfDate"})
    report = _verify(synth, body, collateral, policy=lenient)
    assert report.verified and report.tcb_status == "OutOfDate"
    assert sorted(report.advisory_ids) == SA and SA[1] in report.check("tcb_status").reason
    # ... unless one of its advisories is rejected by name
    picky = lenient.model_copy(update={"rejected_advisory_ids": frozenset({SA[1]})})
    report = _verify(synth, body, collateral, policy=picky)
    assert report.check("tcb_status").status is CheckStatus.FAILED
    assert f"rejected advisories: {SA[1]}" in report.check("tcb_status").reason


# --- 3. Revoked: TCB level, PCK leaf in the PCK CRL, PCK CA in the root CA CRL --------------------
PERMISSIVE = AttestationPolicy(
    require_tcb=False,
    accepted_tcb_statuses={
        "UpToDate",
        "SWHardeningNeeded",
        "ConfigurationNeeded",
        "ConfigurationAndSWHardeningNeeded",
        "OutOfDate",
        "OutOfDateConfigurationNeeded",
    },
)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"levels": [platform_level("Revoked", advisories=SA)]},
        {"module_levels": [simple_level("Revoked", QUOTE_TEE_TCB_SVN[0])]},
        {"qe_levels": [simple_level("Revoked", QE_ISVSVN)]},
    ],
    ids=["platform", "tdx_module", "qe"],
)
@pytest.mark.parametrize("policy", [None, PERMISSIVE], ids=["default", "permissive"])
def test_revoked_tcb_level_fails_even_under_a_permissive_policy(synth, body, col, kwargs, policy):
    report = _verify(synth, body, col.build(**kwargs), policy=policy)
    tcb = report.check("tcb_status")
    assert tcb.status is CheckStatus.FAILED
    assert tcb.details["failure"] == TcbFailure.TCB_REVOKED
    assert "Revoked" in tcb.reason and report.tcb_status == "Revoked"
    assert report.verdict is Verdict.FAILED


def test_pck_leaf_in_pck_crl_fails_naming_revocation(synth, body, col):
    serial = synth.pki.leaf.serial_number
    report = _verify(synth, body, col.build(revoked_pck_serials=[serial]), policy=PERMISSIVE)
    tcb = report.check("tcb_status")
    assert tcb.status is CheckStatus.FAILED and report.verdict is Verdict.FAILED
    assert tcb.details["failure"] == TcbFailure.CERTIFICATE_REVOKED
    assert "revoked" in tcb.reason.lower() and report.tcb_status == "Revoked"
    assert tcb.details["revoked_certificates"] == [f"pck_crl:{serial:x}"]
    # other serials in the CRL do not matter
    ok = _verify(synth, body, col.build(revoked_pck_serials=[serial + 1]))
    assert ok.verified


def test_pck_ca_in_root_ca_crl_fails_naming_revocation(synth, body, col):
    serial = synth.pki.inter.serial_number
    report = _verify(synth, body, col.build(revoked_ca_serials=[serial]))
    tcb = report.check("tcb_status")
    assert tcb.status is CheckStatus.FAILED
    assert tcb.details["failure"] == TcbFailure.CERTIFICATE_REVOKED
    assert tcb.details["revoked_certificates"] == [f"root_ca_crl:{serial:x}"]


def test_evaluate_tcb_raises_typed_revocation(synth, body, col):
    quote = bytes.fromhex(json.loads(body)["quote"])
    collateral = load_collateral(col.build(levels=[platform_level("Revoked")]))
    with pytest.raises(TcbEvaluationError) as info:
        evaluate_tcb(quote, collateral, now=NOW, root_ca_der=synth.pki.root_der)
    assert info.value.code == "tcb_revoked" and info.value.status == "Revoked"
    assert "\n" not in str(info.value)


# --- 4. ConfigurationNeeded / SWHardeningNeeded ---------------------------------------------------
def test_sw_hardening_needed_is_accepted_by_default_with_advisories(synth, body, col):
    report = _verify(synth, body, col.build([platform_level("SWHardeningNeeded", advisories=SA)]))
    tcb = report.check("tcb_status")
    assert tcb.status is CheckStatus.PASSED and report.verified
    assert report.tcb_status == "SWHardeningNeeded" and sorted(report.advisory_ids) == SA
    assert SA[0] in tcb.reason and sorted(tcb.details["advisory_ids"]) == SA
    strict = AttestationPolicy(accepted_tcb_statuses={"UpToDate"})
    assert (
        _verify(synth, body, col.build([platform_level("SWHardeningNeeded")]), policy=strict)
        .check("tcb_status")
        .status
        is CheckStatus.FAILED
    )


@pytest.mark.parametrize(
    "status",
    ["ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded", "OutOfDateConfigurationNeeded"],
)
def test_configuration_statuses_follow_accepted_tcb_statuses(synth, body, col, status):
    collateral = col.build([platform_level(status, advisories=SA)])
    report = _verify(synth, body, collateral)
    assert report.check("tcb_status").status is CheckStatus.FAILED
    assert report.tcb_status == status and sorted(report.advisory_ids) == SA
    assert f"{status} is not accepted" in report.check("tcb_status").reason
    accepting = AttestationPolicy(accepted_tcb_statuses={"UpToDate", status})
    report = _verify(synth, body, collateral, policy=accepting)
    assert report.verified and report.tcb_status == status


def test_policy_refuses_unknown_statuses():
    with pytest.raises(AttestationPolicyError, match="unknown TCB status"):
        AttestationPolicy.from_mapping({"accepted_tcb_statuses": ["UpToDate", "UptoDate"]})


# --- 5. expired / not-yet-valid collateral --------------------------------------------------------
def test_expired_collateral_fails(synth, body, col):
    collateral = col.build()
    # nextUpdate of every part is NOW + 29 days: valid just before, refused at and after it
    assert _verify(synth, body, collateral, now=NOW + timedelta(days=28)).verified
    report = _verify(synth, body, collateral, now=NOW + timedelta(days=29, seconds=1))
    tcb = report.check("tcb_status")
    assert tcb.status is CheckStatus.FAILED and report.verdict is Verdict.FAILED
    assert tcb.details["failure"] == TcbFailure.COLLATERAL_EXPIRED
    assert "expired" in tcb.reason


@pytest.mark.parametrize("name", ["tcb_info", "qe_identity"])
def test_one_expired_document_fails(synth, body, col, name):
    stale = {"issue": NOW - timedelta(days=31), "next_update": NOW - timedelta(seconds=1)}
    text = getattr(col, name)(**stale)
    report = _verify(synth, body, col.replace_document(col.build(), name, text))
    tcb = report.check("tcb_status")
    assert tcb.status is CheckStatus.FAILED
    assert tcb.details["failure"] == TcbFailure.COLLATERAL_EXPIRED


def test_collateral_issued_in_the_future_fails(synth, body, col):
    report = _verify(synth, body, col.build(issue=NOW + timedelta(hours=1)))
    tcb = report.check("tcb_status")
    assert tcb.status is CheckStatus.FAILED
    assert tcb.details["failure"] == TcbFailure.COLLATERAL_NOT_YET_VALID


# --- 6. collateral not chained to the root, tampered or for another platform ----------------------
def test_collateral_signed_outside_the_root_fails(synth, body, col):
    key, rogue_root = (
        ec.generate_private_key(ec.SECP256R1()),
        ec.generate_private_key(ec.SECP256R1()),
    )
    rogue = col.issue_tcb_signer(key, rogue_root)
    report = _verify(synth, body, col.build(signing_key=key, signing_cert=rogue))
    tcb = report.check("tcb_status")
    assert tcb.status is CheckStatus.FAILED and report.verdict is Verdict.FAILED
    assert tcb.details["failure"] == TcbFailure.UNTRUSTED_CHAIN


def test_collateral_signed_by_another_key_than_its_certificate_fails(synth, body, col):
    report = _verify(synth, body, col.build(signing_key=ec.generate_private_key(ec.SECP256R1())))
    tcb = report.check("tcb_status")
    assert tcb.status is CheckStatus.FAILED
    assert tcb.details["failure"] == TcbFailure.BAD_COLLATERAL_SIGNATURE


def test_tampered_tcb_info_fails(synth, body, col):
    collateral = col.build([platform_level("OutOfDate")])
    collateral["tcb_info"] = collateral["tcb_info"].replace('"OutOfDate"', '"UpToDate"')
    report = _verify(synth, body, collateral)
    assert report.check("tcb_status").details["failure"] == TcbFailure.BAD_COLLATERAL_SIGNATURE
    assert report.tcb_status is None and report.verdict is Verdict.FAILED


def test_collateral_for_another_platform_or_no_level_fails(synth, body, col):
    other = _verify(synth, body, col.build(fmspc="00906EA10001"))
    assert other.check("tcb_status").details["failure"] == TcbFailure.COLLATERAL_MISMATCH
    newer = col.build([platform_level("UpToDate", sgx=_bump(PCK_CPU_SVN, 3))])
    report = _verify(synth, body, newer)
    assert report.check("tcb_status").details["failure"] == TcbFailure.NO_MATCHING_TCB_LEVEL
    assert report.verdict is Verdict.FAILED


@pytest.mark.parametrize(
    "levels",
    [
        {"module_levels": [simple_level("UpToDate", QUOTE_TEE_TCB_SVN[0] + 1)]},
        {"qe_levels": [simple_level("UpToDate", QE_ISVSVN + 1)]},
    ],
)
def test_module_or_qe_below_every_level_fails_named(synth, body, col, levels):
    """A TDX module or QE older than every level of its identity is refused and named as such
    (it was "other", or a QE identity mismatch)."""
    report = _verify(synth, body, col.build(**levels))
    tcb = report.check("tcb_status")
    assert tcb.status is CheckStatus.FAILED and "below minimum required" in tcb.reason
    assert tcb.details["failure"] == TcbFailure.NO_MATCHING_TCB_LEVEL
    assert tcb.reason.count("DCAP verification refused the quote") == 1
    assert report.verdict is Verdict.FAILED


@pytest.mark.parametrize(
    ("message", "code"),
    [
        ("Verification failed: TCB status is invalid: Revoked", TcbFailure.TCB_REVOKED),
        (
            (
                "Verification failed: Failed to verify certificate chain\n\n"
                "Caused by:\n    CertRevoked"
            ),
            TcbFailure.CERTIFICATE_REVOKED,
        ),
        ("Verification failed: CrlExpired { time: UnixTime(2) }", TcbFailure.COLLATERAL_EXPIRED),
        ("Verification failed: TCBInfo issue date is in the future", "collateral_not_yet_valid"),
        ("Verification failed: No matching TCB level found", TcbFailure.NO_MATCHING_TCB_LEVEL),
        (
            (
                "Verification failed: TDX module TCB level check Caused by: TDX module ISVSVN 11 "
                "is below minimum required from TDX module TCB levels"
            ),
            TcbFailure.NO_MATCHING_TCB_LEVEL,
        ),
        (
            "Verification failed: QE ISVSVN 6 is below minimum required 7 from QE Identity",
            TcbFailure.NO_MATCHING_TCB_LEVEL,
        ),
        ("something new", TcbFailure.OTHER),
    ],
)
def test_classify_dcap_failure(message, code):
    assert classify_dcap_failure(message)[0] == code


@pytest.mark.parametrize(
    ("td_attributes", "dcap_says"),
    [
        ("0200001000000000", "Reserved bits in TD attributes are set"),
        ("0000000000000000", "SEPT_VE_DISABLE is not enabled"),
        ("0000003000000000", "TD migration is enabled"),
        ("0100001000000000", "Debug mode is enabled"),
    ],
)
def test_td_attribute_refusal_is_named_as_such(synth, col, td_attributes, dcap_says):
    """dcap-qvl's refusal of the TD attributes was filed as a QE identity mismatch (reserved
    bits: the word "attributes") or as an unclassified refusal: it is named ``td_attributes``."""
    body = json.dumps(synth.report(td_attributes=bytes.fromhex(td_attributes))).encode()
    report = _verify(synth, body, col.build())
    tcb = report.check("tcb_status")
    assert tcb.status is CheckStatus.FAILED and dcap_says in tcb.reason
    assert tcb.details["failure"] == TcbFailure.TD_ATTRIBUTES
    assert report.check("td_attributes").status is CheckStatus.FAILED
    assert report.verdict is Verdict.FAILED
