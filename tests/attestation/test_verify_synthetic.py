"""verify_attestation on a synthetic Intel-like attestation: a passing report, and one test per
class of tampering asserting exactly which check fails (attestation.md §5.3 item 2)."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest
from attestation_synth import (
    NOW,
    Pki,
    default_app_compose,
    default_event_log,
    runtime_event,
    v1_report_data,
)
from signature_helpers import malleate

from broker.attestation import AttestationPolicy, Verdict, verify_attestation
from broker.attestation.report import CheckStatus

NO_TCB = AttestationPolicy(require_tcb=False)
REQUIRED_PASS = [
    "report_format",
    "quote_structure",
    "quote_signature",
    "qe_report_binding",
    "qe_report_signature",
    "qe_identity",
    "pck_chain",
    "td_attributes",
    "report_data_signer",
    "rtmr3_replay",
    "compose_hash",
]


def _verify(synth, body, *, policy=NO_TCB, signer=None, **kw):
    kw.setdefault("root_ca", synth.pki.root_der)
    kw.setdefault("now", NOW)
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return verify_attestation(raw, expected_signer=signer or synth.signer, policy=policy, **kw)


def _failed(report) -> set[str]:
    return {c.name for c in report.failed_checks}


def _flip(hex_quote: str, offset: int) -> str:
    raw = bytearray(bytes.fromhex(hex_quote))
    raw[offset] ^= 0x01
    return raw.hex()


def test_untampered_report_passes_every_check(synth, tmp_path):
    body = synth.report()
    report = _verify(synth, body, output_dir=tmp_path)
    statuses = {c.name: c.status for c in report.checks}
    for name in REQUIRED_PASS + ["report_data_json", "rtmr0_2_replay", "mr_config_id"]:
        assert statuses[name] is CheckStatus.PASSED, (name, report.check(name))
    assert report.verdict is Verdict.VERIFIED and report.verified
    assert report.signer == synth.signer
    assert report.compose_hash == hashlib.sha256(default_app_compose().encode()).hexdigest()
    assert report.images == [f"0gfoundation/0g-serving-broker@sha256:{'ab' * 32}"]
    assert (
        report.evidence["quote_sha256"] == hashlib.sha256(bytes.fromhex(body["quote"])).hexdigest()
    )
    assert report.evidence["fmspc"] == "00906EA10000"
    # the output folder holds the raw report, the quote and the result JSON
    saved = json.loads((tmp_path / "verification_report.json").read_text())
    assert saved["verdict"] == "verified"
    assert (tmp_path / "attestation_report.json").read_bytes() == json.dumps(body).encode()
    assert (tmp_path / "quote.bin").read_bytes() == bytes.fromhex(body["quote"])


def test_default_policy_does_not_pass_without_tcb(synth):
    report = _verify(synth, synth.report(), policy=None)
    tcb = report.check("tcb_status")
    assert tcb.status is CheckStatus.SKIPPED and tcb.required
    assert not report.failed_checks
    assert report.verdict is Verdict.NOT_VERIFIED


def test_production_root_rejects_synthetic_chain(synth):
    report = _verify(synth, synth.report(), root_ca=None)
    assert _failed(report) == {"pck_chain"}
    assert "does not verify up to the trusted root" in report.check("pck_chain").reason
    assert report.verdict is Verdict.FAILED


def test_v5_quote_and_v1_report_data_layout(synth):
    body = synth.report(version=5, report_data=v1_report_data(synth.signer))
    report = _verify(synth, body)
    assert report.verdict is Verdict.VERIFIED, [c.to_dict() for c in report.failed_checks]
    assert report.check("quote_structure").reason.startswith("TDX quote v5, TD 1.5")
    assert report.check("report_data_signer").details["layout"] == "v1"


def test_zero_tail_is_tolerated_and_nonzero_tail_fails(synth):
    body = synth.report()
    body["quote"] += "00" * 70
    assert _verify(synth, body).verdict is Verdict.VERIFIED
    body["quote"] += "01"
    report = _verify(synth, body)
    assert _failed(report) == {"quote_structure"}
    assert report.verdict is Verdict.FAILED


def test_tampered_body_byte_fails_quote_signature(synth):
    body = synth.report()
    body["quote"] = _flip(body["quote"], 64)  # MRSEAM
    assert _failed(_verify(synth, body)) == {"quote_signature"}


def test_tampered_quote_signature_fails(synth):
    body = synth.report()
    body["quote"] = _flip(body["quote"], 636 + 10)
    assert _failed(_verify(synth, body)) == {"quote_signature"}


def test_tampered_qe_report_fails_qe_signature(synth):
    body = synth.report()
    body["quote"] = _flip(body["quote"], 636 + 134 + 0)  # QE CPUSVN
    assert _failed(_verify(synth, body)) == {"qe_report_signature"}


def test_foreign_attestation_key_fails_qe_binding(synth):
    # A QE report (validly signed by the PCK key) that binds a different attestation key.
    body = synth.report(
        quote=None, qe_report_data=hashlib.sha256(b"other key").digest() + bytes(32)
    )
    assert _failed(_verify(synth, body)) == {"qe_report_binding"}


def test_forged_intermediate_fails_pck_chain(synth):
    forged = Pki.create()
    # the same leaf key, certified by an intermediate that the trusted root never signed
    leaf = Pki.issue_leaf(synth.pki.leaf_key, forged.inter_key)
    from cryptography.hazmat.primitives import serialization

    pem = b"".join(
        c.public_bytes(serialization.Encoding.PEM) for c in (leaf, forged.inter, synth.pki.root)
    )
    body = synth.report(chain_pem=pem.decode())
    report = _verify(synth, body)
    assert _failed(report) == {"pck_chain"}
    assert report.check("qe_report_signature").status is CheckStatus.PASSED


def test_expired_leaf_fails_pck_chain(synth):
    from datetime import UTC, datetime

    report = _verify(synth, synth.report(), now=datetime(2031, 1, 1, tzinfo=UTC))
    assert _failed(report) == {"pck_chain"}


def test_wrong_signer_in_report_data_fails_signer_check(synth):
    other = "0x" + "12" * 20
    body = synth.report(report_data=other.encode().ljust(64, b"\x00"))
    report = _verify(synth, body)
    assert _failed(report) == {"report_data_signer"}
    assert report.signer.lower() == other


def test_json_report_data_cannot_override_the_quote(synth):
    # The quote names another signer; the unauthenticated JSON field names the expected one.
    other = "0x" + "12" * 20
    body = synth.report(
        report_data=other.encode().ljust(64, b"\x00"),
        json_report_data=synth.signer.encode().ljust(64, b"\x00"),
    )
    report = _verify(synth, body)
    assert _failed(report) == {"report_data_signer", "report_data_json"}


def test_tampered_event_log_fails_rtmr3(synth):
    chash = hashlib.sha256(default_app_compose().encode()).digest()
    measured = default_event_log(chash)
    shown = json.loads(json.dumps(measured))
    key_provider = next(e for e in shown if e["event"] == "key-provider")
    key_provider["event_payload"] = b'{"name":"kms","id":"01"}'.hex()
    key_provider["digest"] = ""
    report = _verify(synth, synth.report(measured_log=measured, event_log=shown))
    assert _failed(report) == {"rtmr3_replay"}


def test_empty_runtime_digests_still_replay(synth):
    chash = hashlib.sha256(default_app_compose().encode()).digest()
    measured = default_event_log(chash)
    shown = json.loads(json.dumps(measured))
    for ev in shown:
        if ev["imr"] == 3:
            ev["digest"] = ""
    assert _verify(synth, synth.report(measured_log=measured, event_log=shown)).verified


def test_tampered_app_compose_fails_compose_hash(synth):
    body = synth.report()
    tcb = json.loads(body["tcb_info"])
    tcb["app_compose"] = default_app_compose(image="evil/broker:latest")
    body["tcb_info"] = json.dumps(tcb)
    report = _verify(synth, body)
    assert _failed(report) == {"compose_hash"}


def test_compose_hash_event_after_system_ready_is_ignored(synth):
    evil = default_app_compose(image="evil/broker:latest")
    evil_hash = hashlib.sha256(evil.encode()).digest()
    honest = hashlib.sha256(default_app_compose().encode()).digest()
    # the measured log is honest, plus an app event re-declaring compose-hash after system-ready
    measured = default_event_log(honest, app_events=[("compose-hash", evil_hash)])
    body = synth.report(app_compose=evil, measured_log=measured, mr_config_v1=False)
    report = _verify(synth, body)
    assert _failed(report) == {"compose_hash"}


def test_compose_hash_only_after_system_ready_is_not_trusted(synth):
    chash = hashlib.sha256(default_app_compose().encode()).digest()
    log = [e for e in default_event_log(chash) if e["event"] != "compose-hash"]
    log.append(runtime_event("compose-hash", chash))  # written by a container after system-ready
    report = _verify(synth, synth.report(measured_log=log))
    assert _failed(report) == {"compose_hash"}
    assert "before system-ready" in report.check("compose_hash").reason


@pytest.mark.parametrize(
    ("qe", "reason"),
    [
        ({"qe_mr_signer": bytes(range(32))}, "is not Intel's TD QE"),
        ({"qe_isv_prod_id": 1}, "ISVPRODID 1"),
        ({"qe_attributes": bytes([0x17]) + bytes(15)}, "debug enclave"),
    ],
)
def test_a_quoting_enclave_other_than_intels_fails_without_collateral(synth, qe, reason):
    """A quote signed by a quoting enclave of the platform owner's (the PCK certifies any enclave
    with the provisioning key the owner launches) or by a debug QE can say anything about a TD.
    dcap-qvl catches it against the QE Identity collateral; the local check catches it without."""
    report = _verify(synth, synth.report(**qe))
    assert _failed(report) == {"qe_identity"}
    assert reason in report.check("qe_identity").reason
    assert report.verdict is Verdict.FAILED


def test_debug_td_fails_td_attributes(synth):
    assert _failed(_verify(synth, synth.report(debug=True))) == {"td_attributes"}


@pytest.mark.parametrize(
    ("td_attributes", "reason"),
    [
        ("0000000000000000", "SEPT_VE_DISABLE is not set"),
        ("0000003000000000", "TD is migratable"),
        ("0200001000000000", "reserved TUD bits"),
        ("0001001000000000", "reserved SEC bits"),
        ("0000001000000100", "reserved OTHER bits"),
    ],
)
def test_unsafe_td_attributes_fail_without_collateral(synth, td_attributes, reason):
    """dcap-qvl refuses these TD attributes only when it evaluates collateral; the local check
    refuses them too, so a policy without the TCB step (air-gapped) cannot pass a TD that takes
    #VE on pending pages, can be migrated, or sets bits nobody defined."""
    report = _verify(synth, synth.report(td_attributes=bytes.fromhex(td_attributes)))
    assert _failed(report) == {"td_attributes"}
    assert reason in report.check("td_attributes").reason
    assert report.verdict is Verdict.FAILED


def test_allowed_td_attributes_still_pass(synth):
    """PKS (bit 30), KL (bit 31) and PERFMON (bit 63) are allowed, as dcap-qvl allows them."""
    report = _verify(synth, synth.report(td_attributes=bytes.fromhex("000000d000000080")))
    assert report.check("td_attributes").status is CheckStatus.PASSED
    assert report.verdict is Verdict.VERIFIED


def test_quote_response_signature_header(synth):
    from eth_account import Account
    from eth_account.messages import encode_defunct
    from eth_utils import keccak

    signer = Account.create()
    body = synth.report(report_data=signer.address.encode().ljust(64, b"\x00"))
    raw = json.dumps(body).encode()
    sig = Account.sign_message(encode_defunct(primitive=keccak(raw)), signer.key).signature.hex()
    ok = verify_attestation(
        raw,
        expected_signer=signer.address,
        policy=NO_TCB,
        root_ca=synth.pki.root_der,
        now=NOW,
        quote_signature=sig,
    )
    assert ok.check("quote_response_signature").status is CheckStatus.PASSED and ok.verified
    other = Account.create()
    bad_sig = Account.sign_message(encode_defunct(primitive=keccak(raw)), other.key).signature.hex()
    bad = verify_attestation(
        raw,
        expected_signer=signer.address,
        policy=NO_TCB,
        root_ca=synth.pki.root_der,
        now=NOW,
        quote_signature=bad_sig,
    )
    assert _failed(bad) == {"quote_response_signature"}
    assert bad.verdict is Verdict.FAILED
    twin = _verify(synth, raw, signer=signer.address, quote_signature=malleate(sig))
    assert _failed(twin) == {"quote_response_signature"}
    assert "malformed" in twin.check("quote_response_signature").reason


def test_allowlists(synth):
    body = synth.report()
    chash = hashlib.sha256(default_app_compose().encode()).hexdigest()
    good = AttestationPolicy(
        require_tcb=False,
        allowed_mrtd=[hashlib.sha384(b"mrtd").hexdigest()],
        allowed_compose_hashes=[chash],
        allowed_image_digests=["sha256:" + "ab" * 32],
    )
    report = _verify(synth, body, policy=good)
    assert report.verified
    assert {c.name for c in report.checks} >= {
        "policy_mrtd",
        "policy_compose_hash",
        "policy_image_digests",
    }
    bad = AttestationPolicy(
        require_tcb=False,
        allowed_mrtd=["00" * 48],
        allowed_compose_hashes=["11" * 32],
        allowed_image_digests=["sha256:" + "cd" * 32],
    )
    assert _failed(_verify(synth, body, policy=bad)) == {
        "policy_mrtd",
        "policy_compose_hash",
        "policy_image_digests",
    }


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"services": {"evil": {"build": "https://example.org/evil.git"}}}, "service evil"),
        ({"pre_launch_script": "docker run evil"}, "pre_launch_script"),
    ],
)
def test_image_allowlist_cannot_pass_code_no_digest_names(synth, extra, reason):
    """The image allowlist checked the services that name an image: a service built at boot
    (``build:``) or a dstack pre_launch_script ran any code while every listed image was pinned
    and allowed, and the report said "verified"."""
    image = "0gfoundation/0g-serving-broker@sha256:" + "ab" * 32
    services = {"broker": {"image": image}} | extra.get("services", {})
    doc = {"manifest_version": 2, "docker_compose_file": json.dumps({"services": services})}
    doc |= {k: v for k, v in extra.items() if k != "services"}
    app_compose = json.dumps(doc, indent=4)
    policy = AttestationPolicy(require_tcb=False, allowed_image_digests=["sha256:" + "ab" * 32])
    report = _verify(synth, synth.report(app_compose=app_compose), policy=policy)
    assert report.images == [image]
    assert _failed(report) == {"policy_image_digests"}
    assert reason in report.check("policy_image_digests").reason


def _signed_body(signer, body: dict) -> tuple[bytes, str]:
    """The body's bytes and their ZG-Quote-Signature by ``signer`` (an eth_account account)."""
    from eth_account import Account
    from eth_account.messages import encode_defunct
    from eth_utils import keccak

    raw = json.dumps(body).encode()
    signed = Account.sign_message(encode_defunct(primitive=keccak(raw)), signer.key)
    return raw, "0x" + bytes(signed.signature).hex()


def test_quote_age_policy_fails_closed(synth):
    """The age counts only when someone vouches for the timestamp: a bare JSON timestamp is
    anyone's to write (a replayed report just carries a new one), so it leaves the age unknown;
    under a ZG-Quote-Signature by the attested signer it is checked."""
    from eth_account import Account

    signer = Account.create()
    body = synth.report(report_data=signer.address.encode().ljust(64, b"\x00"))
    policy = AttestationPolicy(require_tcb=False, max_quote_age_s=3600)
    kw = {"policy": policy, "signer": signer.address}
    unknown = _verify(synth, body, **kw)
    assert unknown.check("quote_age").status is CheckStatus.SKIPPED
    assert unknown.verdict is Verdict.NOT_VERIFIED
    body["timestamp"] = int(NOW.timestamp()) - 60
    claimed = _verify(synth, body, **kw)
    assert claimed.quote_age_s == 60 and claimed.check("quote_age").status is CheckStatus.SKIPPED
    assert "not signed" in claimed.check("quote_age").reason
    assert claimed.verdict is Verdict.NOT_VERIFIED
    raw, sig = _signed_body(signer, body)
    fresh = _verify(synth, raw, quote_signature=sig, **kw)
    assert fresh.check("quote_age").status is CheckStatus.PASSED and fresh.verified
    assert "signed" in fresh.quote_age_source
    body["timestamp"] = int(NOW.timestamp()) - 7200
    raw, sig = _signed_body(signer, body)
    stale = _verify(synth, raw, quote_signature=sig, **kw)
    assert _failed(stale) == {"quote_age"}


def test_missing_expected_signer_is_not_verified(synth):
    report = verify_attestation(
        synth.report(), expected_signer=None, policy=NO_TCB, root_ca=synth.pki.root_der, now=NOW
    )
    assert report.check("report_data_signer").status is CheckStatus.SKIPPED
    assert report.signer == synth.signer
    assert report.verdict is Verdict.NOT_VERIFIED


@pytest.mark.parametrize(
    "body, tee, fmt",
    [
        (
            {"compose_content": "services: {}", "evidence": base64.b64encode(b"x").decode()},
            "unsupported",
            "cryptopilot",
        ),
        (
            {
                "report_data": base64.b64encode(b"0x" + b"1" * 40).decode(),
                "intel_quote": "mock_intel_quote",
                "nvidia_payload": "mock_nvidia_payload",
                "event_log": [],
                "info": {"app_id": "mock_app_id", "tcb_info": '{"mock": "tcb_info"}'},
            },
            "none",
            "no-tee",
        ),
        (
            {"report_data": base64.b64encode(b"0x" + b"1" * 40).decode(), "quote": ""},
            "none",
            "no-tee",
        ),
    ],
)
def test_non_tdx_formats_are_classified_not_crashed(body, tee, fmt, tmp_path):
    report = verify_attestation(
        json.dumps(body), expected_signer="0x" + "11" * 20, now=NOW, output_dir=tmp_path
    )
    assert (report.tee, report.report_format) == (tee, fmt)
    assert report.verdict is Verdict.NOT_VERIFIED and not report.failed_checks
    assert (
        json.loads((tmp_path / "verification_report.json").read_text())["verdict"] == "not_verified"
    )


@pytest.mark.parametrize("raw", [b"not json", b"[1, 2]", json.dumps({"quote": "zz"}).encode()])
def test_malformed_bodies_fail_report_format(raw):
    report = verify_attestation(raw, expected_signer=None, now=NOW)
    assert _failed(report) == {"report_format"} and report.verdict is Verdict.FAILED


DEEP = b"[" * 100_000 + b"]" * 100_000


def test_deeply_nested_json_is_a_failed_check_not_a_crash(synth):
    """Nested arrays in the body, or in the JSON texts inside it (event_log, tcb_info), raised
    RecursionError out of verify_attestation, which promises failures as checks."""
    whole = verify_attestation(DEEP, expected_signer=None, now=NOW)
    assert _failed(whole) == {"report_format"} and whole.verdict is Verdict.FAILED
    body = synth.report()
    body["event_log"] = DEEP.decode()
    in_log = _verify(synth, body)
    assert "rtmr3_replay" in _failed(in_log) and in_log.verdict is Verdict.FAILED
    body = synth.report()
    body["tcb_info"] = DEEP.decode()
    in_tcb = _verify(synth, body)
    assert _failed(in_tcb) == {"report_format"} and in_tcb.verdict is Verdict.FAILED
    # an attested app compose whose docker_compose_file nests too deeply names no image
    compose = json.dumps({"docker_compose_file": "a: " + DEEP.decode()})
    deep_compose = _verify(synth, synth.report(app_compose=compose))
    assert deep_compose.check("compose_hash").status is CheckStatus.PASSED
    assert deep_compose.images == []


def test_lone_surrogates_are_failed_checks_not_a_crash(synth):
    """A JSON ``\\ud800`` escape in the app compose or an event name raised UnicodeEncodeError out
    of verify_attestation (no file or event has such text: it fails the check)."""
    body = synth.report()
    tcb = json.loads(body["tcb_info"])
    tcb["app_compose"] = "{}\ud800"
    body["tcb_info"] = json.dumps(tcb)
    compose = _verify(synth, body)
    assert _failed(compose) == {"compose_hash"} and compose.verdict is Verdict.FAILED
    body = synth.report()
    events = json.loads(body["event_log"])
    events[-1]["event"] = "app\ud800"
    body["event_log"] = json.dumps(events)
    name = _verify(synth, body)
    assert "rtmr3_replay" in _failed(name) and "Unicode" in name.check("rtmr3_replay").reason


def test_runtime_event_helper_matches_recomputation():
    ev = runtime_event("compose-hash", b"\x01" * 32)
    from broker.attestation.eventlog import parse_event_log, runtime_event_digest

    parsed = parse_event_log([ev])[0]
    assert runtime_event_digest(parsed).hex() == ev["digest"]
