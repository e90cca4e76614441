"""The real near/mpc dstack sample (../shared/attestation-samples) verified with a pinned time."""

from __future__ import annotations

import json

import dcap_qvl
from attestation_synth import SAMPLE_NOW

from broker.attestation import Verdict, load_collateral, parse_quote, verify_attestation
from broker.attestation.collateral import collateral_expiry, evaluate_tcb
from broker.attestation.report import CheckStatus

EXPECTED = {
    "mr_td": (
        "f06dfda6dce1cf904d4e2bab1dc370634cf95cefa2ceb2de2eee127c93826980"
        "90d7a4a13e14c536ec6c9c3c8fa87077"
    ),
    "rt_mr3": (
        "86f1808cffc050f3c0c09d29da2bfcec7eba3e8fa52016a7341f28884230f9ca"
        "8b56400413d57bce00b578e36790b555"
    ),
}
COMPOSE_HASH = "2911e1f733466216dedb862d6d669e11256ee7a34ce4dbc66c4b807ba7a9c895"


def test_parser_matches_readme_and_dcap_qvl(near_sample):
    quote = parse_quote(near_sample["quote"])
    assert quote.version == 4 and quote.body_type == 2
    assert quote.body.mr_td.hex() == EXPECTED["mr_td"]
    assert quote.body.rt_mr3.hex() == EXPECTED["rt_mr3"]
    assert quote.body.report_data.hex().startswith("0001e4faaedae819")
    assert quote.body.mr_config_id.hex() == "01" + COMPOSE_HASH + "00" * 15
    assert len(quote.signed_region) == 632
    theirs = dcap_qvl.parse_quote(near_sample["quote"])
    for name in (
        "mr_td",
        "rt_mr0",
        "rt_mr1",
        "rt_mr2",
        "rt_mr3",
        "report_data",
        "mr_config_id",
        "tee_tcb_svn",
        "td_attributes",
    ):
        assert getattr(quote.body, name) == bytes(getattr(theirs.report, name)), name
    assert quote.pck_chain_pem.encode() in bytes(theirs.cert_chain_pem_bytes())


def test_sample_verifies_except_the_0g_signer(near_sample, tmp_path):
    report = verify_attestation(
        json.dumps(near_sample["body"]).encode(),
        expected_signer="0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        collateral=near_sample["collateral"],
        now=SAMPLE_NOW,
        output_dir=tmp_path,
        file_prefix="broker_",
    )
    status = {c.name: c.status for c in report.checks}
    for name in (
        "quote_structure",
        "quote_signature",
        "qe_report_binding",
        "qe_report_signature",
        "pck_chain",
        "tcb_status",
        "td_attributes",
        "rtmr3_replay",
        "rtmr0_2_replay",
        "compose_hash",
        "mr_config_id",
    ):
        assert status[name] is CheckStatus.PASSED, report.check(name)
    assert report.tcb_status == "UpToDate" and report.advisory_ids == []
    assert report.check("pck_chain").details["fmspc"] == "B0C06F000000"
    assert report.compose_hash == COMPOSE_HASH
    # NEAR's report_data layout is not a 0G signer: the signer check fails, so the verdict fails
    assert {c.name for c in report.failed_checks} == {"report_data_signer"}
    assert report.signer is None and report.verdict is Verdict.FAILED
    assert (tmp_path / "broker_quote.bin").read_bytes() == near_sample["quote"][:4936]
    assert (tmp_path / "broker_verification_report.json").exists()


def test_sample_outside_collateral_window_fails_tcb(near_sample):
    for now in (SAMPLE_NOW - 3 * 3600, 1789171200):  # before issue / after QE identity expiry
        report = verify_attestation(
            near_sample["body"], expected_signer=None, collateral=near_sample["collateral"], now=now
        )
        tcb = report.check("tcb_status")
        assert tcb.status is CheckStatus.FAILED, tcb
        assert "DCAP verification refused" in tcb.reason


def test_collateral_expiry_and_tcb_evaluation(near_sample):
    col = load_collateral(near_sample["collateral"])
    assert collateral_expiry(col).isoformat() == "2026-09-11T23:57:11+00:00"
    ev = evaluate_tcb(near_sample["quote"], col, now=SAMPLE_NOW)
    assert ev.status == "UpToDate" and ev.advisory_ids == ()


def test_tampered_sample_body_fails_signature_and_tcb(near_sample):
    raw = bytearray(near_sample["quote"])
    raw[200] ^= 1  # MRTD
    body = dict(near_sample["body"], quote=raw.hex())
    report = verify_attestation(
        body, expected_signer=None, collateral=near_sample["collateral"], now=SAMPLE_NOW
    )
    failed = {c.name for c in report.failed_checks}
    assert {"quote_signature", "tcb_status"} <= failed
