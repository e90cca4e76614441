"""Quote parser, event log, report formats and policy: structure rules and clear typed errors."""

from __future__ import annotations

import base64
import hashlib
import json
import struct

import pytest
from attestation_synth import SAMPLE_NOW

from broker.attestation import (
    AttestationPolicy,
    AttestationPolicyError,
    QuoteFormatError,
    ReportFormatError,
    parse_quote,
    verify_attestation,
)
from broker.attestation.eventlog import parse_event_log, replay_event_log, runtime_event_digest
from broker.attestation.report_formats import ReportKind, parse_report_body
from broker.attestation.verifier import signer_from_report_data
from broker.errors import BrokerError


@pytest.fixture(scope="module")
def quote_bytes(synth) -> bytes:
    return synth.quote()


@pytest.mark.parametrize(
    "offset, value, message",
    [
        (0, struct.pack("<H", 3), "unsupported quote version 3"),
        (2, struct.pack("<H", 3), "attestation key type 3"),
        (4, struct.pack("<I", 0), "is not TDX"),
        (12, b"\x00" * 16, "is not Intel's"),
        (636 + 128, struct.pack("<H", 5), "certification data type 5 is not 6"),
    ],
)
def test_header_and_structure_rules(quote_bytes, offset, value, message):
    raw = bytearray(quote_bytes)
    raw[offset : offset + len(value)] = value
    with pytest.raises(QuoteFormatError, match=message):
        parse_quote(bytes(raw))


def test_truncated_quote_and_error_hierarchy(quote_bytes):
    with pytest.raises(QuoteFormatError, match="truncated") as info:
        parse_quote(quote_bytes[:700])
    assert isinstance(info.value, BrokerError) and isinstance(info.value, ValueError)


def test_parser_agrees_with_dcap_qvl_on_synthetic_v5(synth):
    import dcap_qvl

    raw = synth.quote(version=5)
    ours, theirs = parse_quote(raw), dcap_qvl.parse_quote(raw)
    assert ours.body_type == 3 and len(ours.signed_region) == 702
    for name in ("mr_td", "rt_mr3", "report_data", "mr_service_td", "tee_tcb_svn2"):
        assert getattr(ours.body, name) == bytes(getattr(theirs.report, name)), name
    assert theirs.fmspc() == "00906EA10000"


def test_v2_runtime_events_and_preimages():
    payload = hashlib.sha256(b"compose").digest()
    pre = json.dumps(
        {"name": "compose-hash", "payload": payload.hex(), "type": 134217729}, separators=(",", ":")
    ).encode()
    ev = {
        "imr": 3,
        "event_type": 134217729,
        "event": "compose-hash",
        "event_payload": payload.hex(),
        "version": 2,
        "digest": hashlib.sha384(pre).hexdigest(),
        "preimage": pre.hex(),
    }
    parsed = parse_event_log(json.dumps([ev]))
    assert runtime_event_digest(parsed[0]) == hashlib.sha384(pre).digest()
    assert replay_event_log(parsed).errors == []
    ev["preimage"] = pre.replace(b"compose", b"xompose").hex()
    assert "preimage" in replay_event_log(parse_event_log([ev])).errors[0]


@pytest.mark.parametrize(
    "log", ["not json", {"a": 1}, [{"imr": 7, "event_type": 1}], [{"imr": 3, "digest": "zz"}]]
)
def test_bad_event_logs_raise(log):
    with pytest.raises(ReportFormatError):
        parse_event_log(log)


def test_report_data_layouts():
    addr = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
    assert signer_from_report_data(addr.lower().encode().ljust(64, b"\0")) == (addr, "legacy")
    v1 = b"\x01" * 32 + bytes.fromhex(addr[2:]) + b"\0\0\0\x01" + bytes(8)
    assert signer_from_report_data(v1) == (addr, "v1")
    assert signer_from_report_data(b"\x00\x01" + bytes(62)) == (None, "unknown")
    assert signer_from_report_data((addr + "x").encode().ljust(64, b"\0")) == (None, "unknown")


def test_report_format_variants():
    rd = bytes(range(64))
    hex_body = parse_report_body({"quote": "0x00", "report_data": rd.hex(), "event_log": "[]"})
    assert hex_body.format == "dstack-getquote" and hex_body.report_data == rd
    b64 = parse_report_body(
        {"quote": "00", "report_data": base64.b64encode(rd).decode(), "tcb_info": ""}
    )
    assert b64.format == "0g-dstack" and b64.report_data == rd and b64.tcb_info is None
    nested = parse_report_body({"quote": "00", "info": {"tcb_info": '{"app_compose": "x"}'}})
    assert nested.tcb_info == {"app_compose": "x"}
    vllm = parse_report_body({"intel_quote": "00", "signing_address": "0xabc"})
    assert vllm.kind is ReportKind.DSTACK and vllm.format == "vllm-proxy"
    tappd = parse_report_body({"quote": "00", "provider_signer": "0x1", "key": "0x1"})
    assert tappd.kind is ReportKind.UNSUPPORTED
    with pytest.raises(ReportFormatError):
        parse_report_body({"quote": "00", "tcb_info": "[1]"})


def test_policy_validation(tmp_path):
    with pytest.raises(AttestationPolicyError, match="Revoked"):
        AttestationPolicy.from_mapping({"accepted_tcb_statuses": ["UpToDate", "Revoked"]})
    with pytest.raises(AttestationPolicyError):
        AttestationPolicy.from_mapping({"allowed_mrtd": ["abcd"]})
    with pytest.raises(AttestationPolicyError):
        AttestationPolicy.from_mapping({"unknown_key": 1})
    p = AttestationPolicy.from_mapping({"allowed_image_digests": ["AB" * 32]})
    assert p.allowed_image_digests == ("sha256:" + "ab" * 32,)
    from broker.attestation import load_policy

    assert load_policy() == AttestationPolicy()  # no file under ZG_HOME: defaults
    f = tmp_path / "p.json"
    f.write_text("{not json")
    with pytest.raises(AttestationPolicyError):
        load_policy(f)


def test_tcb_status_outside_policy_fails(near_sample):
    strict = AttestationPolicy(accepted_tcb_statuses=["SWHardeningNeeded"], require_signer=False)
    report = verify_attestation(
        near_sample["body"],
        expected_signer=None,
        collateral=near_sample["collateral"],
        now=SAMPLE_NOW,
        policy=strict,
    )
    tcb = report.check("tcb_status")
    assert tcb.status.value == "failed" and "UpToDate is not accepted" in tcb.reason
