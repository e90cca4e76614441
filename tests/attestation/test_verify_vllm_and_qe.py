"""The vLLM-proxy report_data layout (signer address ‖ 12 zero bytes ‖ 32-byte request nonce, as the
NEAR AI and Phala vLLM-proxy verifiers document) and the typed label of a QE report signature that
the collateral's PCK chain refuses (issue 12)."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest
from attestation_collateral_synth import SyntheticCollateral
from attestation_synth import NOW, SyntheticTdx, v1_report_data
from cryptography.hazmat.primitives.asymmetric import ec

from broker.attestation import (
    AttestationPolicy,
    TcbFailure,
    Verdict,
    signer_from_report_data,
    verify_attestation,
)
from broker.attestation.report import CheckStatus
from broker.attestation.tcb import classify_dcap_failure
from broker.attestation.verifier import report_data_nonce

NO_TCB = AttestationPolicy(require_tcb=False)
NONCE = hashlib.sha256(b"request nonce").digest()
OTHER = "0x" + "cd" * 20


def vllm_report_data(address: str, nonce: bytes = NONCE) -> bytes:
    return bytes.fromhex(address[2:]) + bytes(12) + nonce


def vllm_body(synth: SyntheticTdx, report_data: bytes, *, nonce: bytes | None = NONCE) -> bytes:
    """A vLLM-proxy shaped ``/v1/attestation/report`` body around a synthetic quote."""
    dstack = synth.report(report_data=report_data)
    body = {
        "signing_address": synth.signer,
        "signing_algo": "ecdsa",
        "intel_quote": dstack["quote"],
        "nvidia_payload": "{}",
        "event_log": dstack["event_log"],
        "info": {"tcb_info": dstack["tcb_info"]},
    }
    if nonce is not None:
        body["nonce"] = nonce.hex()
    return json.dumps(body).encode()


def _verify(synth, body, signer, **kw):
    kw.setdefault("root_ca", synth.pki.root_der)
    kw.setdefault("now", NOW)
    kw.setdefault("policy", NO_TCB)
    return verify_attestation(body, expected_signer=signer, **kw)


# --- the layout --------------------------------------------------------------------------------
def test_vllm_proxy_layout_is_recognised(synth):
    rd = vllm_report_data(synth.signer)
    assert signer_from_report_data(rd) == (synth.signer, "vllm-proxy")
    assert report_data_nonce(rd) == NONCE


@pytest.mark.parametrize("index", [20, 25, 31])
def test_non_zero_bytes_20_to_31_are_not_the_vllm_layout(synth, index):
    rd = bytearray(vllm_report_data(synth.signer))
    rd[index] = 1
    assert signer_from_report_data(bytes(rd)) == (None, "unknown")
    assert report_data_nonce(bytes(rd)) is None


def test_zero_address_or_zero_nonce_is_not_the_vllm_layout(synth):
    assert signer_from_report_data(bytes(32) + NONCE) == (None, "unknown")
    assert signer_from_report_data(vllm_report_data(synth.signer, bytes(32))) == (None, "unknown")


def test_0g_layouts_still_win(synth):
    legacy = synth.signer.encode().ljust(64, b"\0")
    assert signer_from_report_data(legacy)[1] == "legacy"
    assert report_data_nonce(legacy) is None


def test_a_chosen_vllm_nonce_cannot_pose_as_the_v1_layout(synth):
    """A vLLM-proxy node quotes ``signing address ‖ 12 zero bytes ‖ nonce`` for any nonce asked.
    Asked for ``K ‖ be32(1) ‖ 8 zero bytes``, its genuine quote also matched the 0G v1 layout
    (``rd[52:56] == 1``, zero tail), read first, which named K: wrapped in a 0G ``/v1/quote``
    body, it verified a key K that no TEE holds. A v1 ``enc_pub`` (an X25519 key) never ends in
    12 zero bytes, so that report_data is the vLLM layout and names the node's own key."""
    forged_signer = "0x" + "ee" * 20
    nonce = bytes.fromhex(forged_signer[2:]) + (1).to_bytes(4, "big") + bytes(8)
    rd = vllm_report_data(synth.signer, nonce)
    assert signer_from_report_data(rd) == (synth.signer, "vllm-proxy")
    wrapped = json.dumps(synth.report(report_data=rd)).encode()
    report = _verify(synth, wrapped, forged_signer)
    assert report.check("report_data_signer").status is CheckStatus.FAILED
    assert report.signer == synth.signer and report.verdict is Verdict.FAILED


@pytest.mark.parametrize("layout", ["legacy", "v1"])
def test_a_quote_naming_the_zero_address_never_passes(synth, layout):
    """A service with no TEE signer set has the zero address on chain: a quote naming it
    matched, so "verified" vouched for a signer no key can sign for."""
    zero = "0x" + "00" * 20
    rd = zero.encode().ljust(64, b"\0") if layout == "legacy" else v1_report_data(zero)
    report = _verify(synth, json.dumps(synth.report(report_data=rd)).encode(), zero)
    check = report.check("report_data_signer")
    assert check.status is CheckStatus.FAILED and "zero address" in check.reason
    assert report.verdict is Verdict.FAILED


# --- the signer check on a vLLM-proxy report ------------------------------------------------------
def test_vllm_report_passes_the_signer_check_for_its_signer(synth):
    report = _verify(synth, vllm_body(synth, vllm_report_data(synth.signer)), synth.signer)
    assert report.report_format == "vllm-proxy"
    signer = report.check("report_data_signer")
    assert signer.status is CheckStatus.PASSED and signer.details["layout"] == "vllm-proxy"
    assert report.signer == synth.signer
    # JSON nonce == quote nonce, but no nonce of ours was sent: freshness unknown (not required)
    nonce = report.check("report_data_nonce")
    assert nonce.status is CheckStatus.SKIPPED and not nonce.required
    assert report.check("signing_address_json").status is CheckStatus.PASSED
    assert report.evidence["report_data_nonce"] == NONCE.hex()
    assert report.verdict is Verdict.VERIFIED, [c.to_dict() for c in report.failed_checks]
    assert report.signer_verification["all_match"] is True


def test_vllm_report_fails_the_signer_check_for_another_signer(synth):
    report = _verify(synth, vllm_body(synth, vllm_report_data(synth.signer)), OTHER)
    assert report.check("report_data_signer").status is CheckStatus.FAILED
    assert report.verdict is Verdict.FAILED
    assert report.signer_verification == {
        "contract_address": OTHER,
        "report_addresses": [{"report_type": "combined", "address": synth.signer, "match": False}],
        "all_match": False,
    }


def test_vllm_report_with_non_zero_padding_fails_the_signer_check(synth):
    rd = bytearray(vllm_report_data(synth.signer))
    rd[24] = 0xFF
    report = _verify(synth, vllm_body(synth, bytes(rd)), synth.signer)
    assert report.check("report_data_signer").status is CheckStatus.FAILED
    assert report.signer is None and report.check("report_data_nonce") is None


def test_vllm_nonce_against_the_request_and_the_json(synth):
    rd = vllm_report_data(synth.signer)
    fresh = _verify(synth, vllm_body(synth, rd, nonce=None), synth.signer, expected_nonce=NONCE)
    assert fresh.check("report_data_nonce").status is CheckStatus.PASSED
    assert "fresh" in fresh.check("report_data_nonce").reason
    # the provider answered with a quote made for another nonce: freshness unknown, not passed
    stale = _verify(synth, vllm_body(synth, rd, nonce=None), synth.signer, expected_nonce=b"x" * 32)
    nonce = stale.check("report_data_nonce")
    assert nonce.status is CheckStatus.SKIPPED and not nonce.required
    # a JSON nonce that is not the quote's is a lie and fails the report
    lying = _verify(synth, vllm_body(synth, rd, nonce=b"y" * 32), synth.signer)
    assert lying.check("report_data_nonce").status is CheckStatus.FAILED
    assert lying.verdict is Verdict.FAILED


def test_a_quote_made_for_our_nonce_is_fresh_for_the_age_policy(synth):
    rd = vllm_report_data(synth.signer)
    policy = AttestationPolicy(require_tcb=False, max_quote_age_s=60)
    body = vllm_body(synth, rd, nonce=None)
    fresh = _verify(synth, body, synth.signer, expected_nonce=NONCE, policy=policy)
    assert fresh.check("quote_age").status is CheckStatus.PASSED and fresh.verified
    replayed = _verify(synth, body, synth.signer, expected_nonce=b"x" * 32, policy=policy)
    assert replayed.check("quote_age").status is CheckStatus.SKIPPED and not replayed.verified


def test_vllm_json_signing_address_must_be_the_quotes(synth):
    body = json.loads(vllm_body(synth, vllm_report_data(synth.signer)))
    body["signing_address"] = OTHER
    report = _verify(synth, json.dumps(body).encode(), synth.signer)
    assert report.check("signing_address_json").status is CheckStatus.FAILED
    assert report.check("report_data_signer").status is CheckStatus.PASSED
    assert report.verdict is Verdict.FAILED


# --- the QE report signature label ------------------------------------------------------------
@pytest.fixture(scope="module")
def col(synth) -> SyntheticCollateral:
    return SyntheticCollateral(synth.pki)


def test_qe_report_signed_outside_the_pck_is_labelled_as_such(synth, col):
    # same PCK certificate chain, but the QE report is signed by a key that is not the PCK's
    rogue = SyntheticTdx(
        signer=synth.signer,
        pki=dataclasses.replace(synth.pki, leaf_key=ec.generate_private_key(ec.SECP256R1())),
        ak=synth.ak,
    )
    report = verify_attestation(
        json.dumps(rogue.report()).encode(),
        expected_signer=synth.signer,
        collateral=col.build(),
        root_ca=synth.pki.root_der,
        now=NOW,
    )
    tcb = report.check("tcb_status")
    assert tcb.status is CheckStatus.FAILED
    assert tcb.details["failure"] == TcbFailure.QE_REPORT_SIGNATURE_INVALID
    assert tcb.details["failure"] != TcbFailure.QE_IDENTITY_MISMATCH
    assert "not signed by the PCK certificate's key" in tcb.reason
    qe = report.check("qe_report_signature")
    assert qe.status is CheckStatus.FAILED
    assert qe.details["failure"] == TcbFailure.QE_REPORT_SIGNATURE_INVALID
    assert report.check("pck_chain").status is CheckStatus.PASSED
    assert report.verdict is Verdict.FAILED


def test_qe_report_not_binding_the_attestation_key_is_labelled_as_such(synth, col):
    report = verify_attestation(
        json.dumps(synth.report(qe_report_data=bytes(64))).encode(),
        expected_signer=synth.signer,
        collateral=col.build(),
        root_ca=synth.pki.root_der,
        now=NOW,
    )
    assert report.check("tcb_status").details["failure"] == TcbFailure.QE_REPORT_BINDING_MISMATCH
    assert report.check("qe_report_binding").status is CheckStatus.FAILED


@pytest.mark.parametrize(
    ("message", "code"),
    [
        (
            "Verification failed: Signature is invalid for qe_report in quote",
            TcbFailure.QE_REPORT_SIGNATURE_INVALID,
        ),
        ("Verification failed: QE report hash mismatch", TcbFailure.QE_REPORT_BINDING_MISMATCH),
        (
            "Verification failed: ISV enclave report signature is invalid",
            TcbFailure.QUOTE_SIGNATURE_INVALID,
        ),
        (
            "Verification failed: TDX module MRSIGNER mismatch: expected 00, got 01",
            TcbFailure.TDX_MODULE_MISMATCH,
        ),
        (
            "Verification failed: QE MRSIGNER mismatch: expected 00, got 01",
            TcbFailure.QE_IDENTITY_MISMATCH,
        ),
        (
            "Verification failed: QE ISVPRODID mismatch: expected 2, got 1",
            TcbFailure.QE_IDENTITY_MISMATCH,
        ),
    ],
)
def test_classify_quote_and_qe_failures(message, code):
    assert classify_dcap_failure(message)[0] == code
