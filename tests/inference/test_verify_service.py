"""verify_service and ``0g-broker verify`` against a real loopback HTTP server serving ``/v1/quote``
(synthetic TDX reports and our own gateway's no-TEE report), with a stand-in service lookup."""

from __future__ import annotations

import json
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import typer
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "attestation"))
from attestation_synth import NOW, SyntheticTdx

from broker.attestation import AttestationFetchError, AttestationPolicy, Verdict
from broker.attestation.report import CheckStatus
from broker.attestation.verifier import QUOTE_REPORT_MAX_BYTES
from broker.inference.verify import verify_service

PROVIDER = "0x" + "a1" * 20
NO_TCB = AttestationPolicy(require_tcb=False)


@dataclass
class FakeService:
    """Stand-in for the on-chain Service (only the fields verify_service reads)."""

    url: str
    tee_signer_address: str
    additional_info: str = ""
    model: str = "test-model"


@pytest.fixture(scope="module")
def synth() -> SyntheticTdx:
    return SyntheticTdx()


@pytest.fixture()
def server():
    """Loopback server; ``routes[path] = (status, body_bytes)`` or ``routes[path] = fn(query) ->
    (status, body_bytes)`` (``path`` without the query, ``query`` a dict of lists); yields
    (base_url, routes, hits)."""
    routes: dict[str, Any] = {}
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            hits.append(self.path)
            parts = urlsplit(self.path)
            route = routes.get(parts.path, (404, b"not found"))
            status, body = route(parse_qs(parts.query)) if callable(route) else route
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", routes, hits
    srv.shutdown()
    srv.server_close()


def test_combined_provider_verified(server, synth, tmp_path):
    url, routes, _ = server
    routes["/v1/quote"] = (200, json.dumps(synth.report()).encode())
    services = {PROVIDER: FakeService(url, synth.signer.lower())}
    report = verify_service(
        services.__getitem__, PROVIDER, tmp_path, now=NOW, policy=NO_TCB, root_ca=synth.pki.root_der
    )
    assert report.verdict is Verdict.VERIFIED, [c.to_dict() for c in report.checks]
    assert report.provider == PROVIDER and report.url == url + "/v1/quote"
    assert json.loads((tmp_path / "verification_report.json").read_text())["verdict"] == "verified"
    assert (tmp_path / "attestation_report.json").read_bytes() == routes["/v1/quote"][1]


def test_wrong_onchain_signer_fails(server, synth):
    url, routes, _ = server
    routes["/v1/quote"] = (200, json.dumps(synth.report()).encode())
    report = verify_service(
        lambda p: FakeService(url, "0x" + "99" * 20),
        PROVIDER,
        now=NOW,
        policy=NO_TCB,
        root_ca=synth.pki.root_der,
    )
    assert {c.name for c in report.failed_checks} == {"report_data_signer"}


def test_our_gateway_without_tdx_is_no_tee(server):
    from broker.provider.tee import LocalTeeSigner

    signer = LocalTeeSigner(bytes.fromhex("11" * 32))
    url, routes, _ = server
    routes["/v1/quote"] = (200, json.dumps(signer.quote()).encode())
    report = verify_service(lambda p: FakeService(url, signer.address), PROVIDER, now=NOW)
    assert report.tee == "none" and report.report_format == "no-tee"
    assert report.verdict is Verdict.NOT_VERIFIED


def test_separated_provider_verifies_llm_report(server, synth, tmp_path):
    url, routes, hits = server
    llm = SyntheticTdx(signer="0x" + "bb" * 20, pki=synth.pki)
    routes["/v1/quote"] = (200, json.dumps(synth.report()).encode())
    llm_body = json.dumps(llm.report()).encode()
    asked: list[dict] = []

    def llm_route(query):
        asked.append(query)
        return 200, llm_body

    routes["/v1/proxy/attestation/report"] = llm_route
    info = json.dumps({"TargetSeparated": True, "TargetTeeAddress": llm.signer})
    service = FakeService(url, synth.signer, info)
    report = verify_service(
        lambda p: service, PROVIDER, tmp_path, now=NOW, policy=NO_TCB, root_ca=synth.pki.root_der
    )
    assert report.verified and report.sub_reports["llm"].verified
    assert asked[0]["model"] == ["test-model"] and len(bytes.fromhex(asked[0]["nonce"][0])) == 32
    assert (tmp_path / "broker_attestation_report.json").exists()
    assert (tmp_path / "llm_attestation_report.json").exists()
    saved = json.loads((tmp_path / "broker_verification_report.json").read_text())
    assert saved["sub_reports"]["llm"]["verdict"] == "verified"
    # the LLM report naming another signer than TargetTeeAddress fails the whole verdict
    service.additional_info = json.dumps(
        {"TargetSeparated": True, "TargetTeeAddress": synth.signer}
    )
    bad = verify_service(
        lambda p: service, PROVIDER, now=NOW, policy=NO_TCB, root_ca=synth.pki.root_der
    )
    assert bad.verdict is Verdict.FAILED
    # centralized: the broker report only
    service.additional_info = json.dumps({"TargetSeparated": True, "ProviderType": "centralized"})
    n = len(hits)
    central = verify_service(
        lambda p: service, PROVIDER, now=NOW, policy=NO_TCB, root_ca=synth.pki.root_der
    )
    assert central.verified and not central.sub_reports and len(hits) == n + 1


def test_http_error_raises_fetch_error(server):
    url, routes, _ = server
    routes["/v1/quote"] = (500, b"boom")
    with pytest.raises(AttestationFetchError, match="HTTP 500"):
        verify_service(lambda p: FakeService(url, PROVIDER), PROVIDER, now=NOW)


def test_cli_verify_json_and_exit_codes(server, synth, tmp_path):
    from broker.cli.verify import register

    url, routes, _ = server
    routes["/v1/quote"] = (200, json.dumps(synth.report()).encode())
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps({"require_tcb": False}))
    app = typer.Typer()
    register(app, get_broker=lambda ctx: lambda p: FakeService(url, synth.signer))

    @app.callback()
    def _root() -> None:
        pass

    runner = CliRunner()
    args = [
        "verify",
        "--provider",
        PROVIDER,
        "--policy",
        str(policy),
        "--now",
        str(int(NOW.timestamp())),
    ]
    # the injected root is not available from the CLI: the production root rejects the chain
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["verdict"] == "failed"
    assert {c["name"] for c in data["checks"] if c["status"] == "failed"} == {"pck_chain"}
    table = runner.invoke(app, [*args, "--output-dir", str(tmp_path / "out")])
    assert table.exit_code == 1 and "Verdict: failed" in table.stdout
    assert (tmp_path / "out" / "verification_report.json").exists()


# --- SDK parity: on_step, the summary, a vLLM-proxy LLM node (issue 12) --------------------
def _vllm_llm_route(llm: SyntheticTdx, asked: list[dict]):
    """The LLM node's ``/v1/proxy/attestation/report``: a vLLM-proxy body whose quote carries
    ``signer ‖ 12 zero bytes ‖ the request nonce`` (the nonce the client sent)."""

    def route(query):
        asked.append(query)
        nonce = bytes.fromhex(query["nonce"][0])
        rd = bytes.fromhex(llm.signer[2:]) + bytes(12) + nonce
        dstack = llm.report(report_data=rd)
        body = {
            "signing_address": llm.signer,
            "signing_algo": "ecdsa",
            "nonce": nonce.hex(),
            "intel_quote": dstack["quote"],
            "event_log": dstack["event_log"],
            "info": {"tcb_info": dstack["tcb_info"]},
        }
        return 200, json.dumps(body).encode()

    return route


def test_on_step_is_called_as_each_step_happens(server, synth):
    url, routes, hits = server
    routes["/v1/quote"] = (200, json.dumps(synth.report()).encode())
    seen: list[tuple[str, str, int]] = []
    report = verify_service(
        lambda p: FakeService(url, synth.signer),
        PROVIDER,
        on_step=lambda step: seen.append((step.type, step.message, len(hits))),
        now=NOW,
        policy=NO_TCB,
        root_ca=synth.pki.root_der,
    )
    messages = [m for _, m, _ in seen]
    titles = [m for t, m, _ in seen if t == "step"]
    assert titles == [
        f"🔍 Starting TEE verification for provider: {PROVIDER}",
        "📋 Step 1: Retrieving service information from contract...",
        "🔧 Step 2: Parsing and analyzing service configuration...",
        "📥 Step 3: Downloading attestation reports...",
        "🔑 Step 4: TEE Signer Address Verification",
        "🔍 Step 5: DStack Verification Process",
        "📋 Automated Verification Summary",
        "🖼️  Step 6: Image Verification",
    ]
    # steps 1-3 were reported before the report was downloaded, the rest after
    by_title = {m: n for _, m, n in seen}
    assert by_title["📥 Step 3: Downloading attestation reports..."] == 0
    assert by_title["🔑 Step 4: TEE Signer Address Verification"] == 1
    assert "Docker Compose Verification: ✅ PASSED" in messages
    assert "TEE Signer Address Verification: ✅ PASSED (1/1 matches)" in messages
    assert any(m.startswith("✅ combined: quote_signature") for m in messages)
    assert [(s.type, s.message) for s in report.steps] == [(t, m) for t, m, _ in seen]
    # the SDK's summary beside the typed checks
    assert report.signer_verification == {
        "contract_address": synth.signer,
        "report_addresses": [{"report_type": "combined", "address": synth.signer, "match": True}],
        "all_match": True,
    }
    compose = report.compose_verification
    assert compose["passed"] is True
    assert compose["details"]["combined"]["calculated_hash"] == report.compose_hash
    assert compose["details"]["combined"]["event_log_hash"] == report.compose_hash
    assert report.docker_images == [f"0gfoundation/0g-serving-broker@sha256:{'ab' * 32}"]
    saved = report.to_dict()
    assert saved["signer_verification"]["all_match"] and saved["compose_verification"]["passed"]
    assert saved["steps"][0]["type"] == "step"


def test_summary_reports_a_signer_mismatch_and_a_broken_compose(server, synth):
    url, routes, _ = server
    body = synth.report()
    tcb = json.loads(body["tcb_info"])
    tcb["app_compose"] += " "  # no longer the measured compose
    body["tcb_info"] = json.dumps(tcb)
    routes["/v1/quote"] = (200, json.dumps(body).encode())
    seen = []
    report = verify_service(
        lambda p: FakeService(url, "0x" + "99" * 20),
        PROVIDER,
        on_step=seen.append,
        now=NOW,
        policy=NO_TCB,
        root_ca=synth.pki.root_der,
    )
    assert report.signer_verification["all_match"] is False
    assert report.signer_verification["report_addresses"][0]["address"] == synth.signer
    compose = report.compose_verification
    assert compose["passed"] is False and "differs" in compose["details"]["combined"]["error"]
    messages = [s.message for s in seen]
    assert "Docker Compose Verification: ❌ FAILED" in messages
    assert "TEE Signer Address Verification: ❌ FAILED (0/1 matches)" in messages


def test_fetch_error_is_reported_as_an_error_step_then_raised(server):
    url, routes, _ = server
    routes["/v1/quote"] = (502, b"bad gateway")
    seen = []
    with pytest.raises(AttestationFetchError):
        verify_service(lambda p: FakeService(url, PROVIDER), PROVIDER, on_step=seen.append)
    assert seen[-1].type == "error"
    assert seen[-1].message.startswith("❌ TEE verification failed: GET ")


def test_separated_provider_with_a_vllm_proxy_llm_node(server, synth, tmp_path):
    url, routes, _ = server
    llm = SyntheticTdx(signer="0x" + "bb" * 20, pki=synth.pki)
    asked: list[dict] = []
    routes["/v1/quote"] = (200, json.dumps(synth.report()).encode())
    routes["/v1/proxy/attestation/report"] = _vllm_llm_route(llm, asked)
    info = json.dumps({"TargetSeparated": True, "TargetTeeAddress": "0x" + llm.signer[2:].upper()})
    service = FakeService(url, synth.signer, info)
    report = verify_service(
        lambda p: service, PROVIDER, tmp_path, now=NOW, policy=NO_TCB, root_ca=synth.pki.root_der
    )
    sub = report.sub_reports["llm"]
    assert sub.report_format == "vllm-proxy"
    assert sub.check("report_data_signer").details["layout"] == "vllm-proxy"
    nonce = sub.check("report_data_nonce")
    assert nonce.status is CheckStatus.PASSED, nonce  # the quote was made for our nonce
    assert sub.evidence["report_data_nonce"] == asked[0]["nonce"][0]
    assert report.verified and sub.verified
    assert report.signer_verification["all_match"] is True
    assert [e["report_type"] for e in report.signer_verification["report_addresses"]] == [
        "broker",
        "llm",
    ]
    assert set(report.compose_verification["details"]) == {"broker", "llm"}
    assert report.compose_verification["passed"] is True
    saved = json.loads((tmp_path / "broker_verification_report.json").read_text())
    assert saved["sub_reports"]["llm"]["verdict"] == "verified" and saved["steps"]
    # the LLM node names another signer than TargetTeeAddress: the signer check fails for it
    service.additional_info = json.dumps({"TargetSeparated": True, "TargetTeeAddress": PROVIDER})
    bad = verify_service(
        lambda p: service, PROVIDER, now=NOW, policy=NO_TCB, root_ca=synth.pki.root_der
    )
    assert bad.sub_reports["llm"].check("report_data_signer").status is CheckStatus.FAILED
    assert bad.signer_verification["all_match"] is False and bad.verdict is Verdict.FAILED


def test_cli_verify_prints_the_steps_as_they_happen(server, synth, tmp_path):
    from broker.cli.verify import register

    url, routes, _ = server
    routes["/v1/quote"] = (200, json.dumps(synth.report()).encode())
    app = typer.Typer()
    register(app, get_broker=lambda ctx: lambda p: FakeService(url, synth.signer))

    @app.callback()
    def _root() -> None:
        pass

    runner = CliRunner()
    result = runner.invoke(
        app, ["verify", "--provider", PROVIDER, "--now", str(int(NOW.timestamp()))]
    )
    assert result.exit_code == 1, result.output
    text = result.stdout
    step1 = text.index("Step 1: Retrieving service information from contract")
    step4 = text.index("Step 4: TEE Signer Address Verification")
    assert step1 < step4 < text.index("Automated Verification Summary") < text.index("Verdict:")
    assert "TEE Signer Address Verification: ✅ PASSED (1/1 matches)" in text
    as_json = runner.invoke(
        app, ["verify", "--provider", PROVIDER, "--json", "--now", str(int(NOW.timestamp()))]
    )
    data = json.loads(as_json.stdout)  # no step lines mixed into the JSON
    assert data["signer_verification"]["all_match"] is True
    assert data["compose_verification"]["passed"] is True
    assert data["steps"][1]["message"].startswith("📋 Step 1")


def test_inference_broker_method_passes_on_step(server, synth):
    from broker.inference.broker import InferenceBroker

    url, routes, _ = server
    routes["/v1/quote"] = (200, json.dumps(synth.report()).encode())

    class Lookup:  # what InferenceBroker.verify_service hands on as the service lookup: itself
        def get_service(self, provider):
            return FakeService(url, synth.signer)

    seen = []
    report = InferenceBroker.verify_service(
        Lookup(), PROVIDER, on_step=seen.append, now=NOW, policy=NO_TCB
    )
    assert seen and seen[0].message.startswith("🔍 Starting TEE verification")
    assert report.steps == seen


def test_oversized_quote_report_is_refused_unread(server):
    """A hostile provider cannot make verification buffer an endless ``/v1/quote`` body: the
    read stops past QUOTE_REPORT_MAX_BYTES with a typed fetch error."""
    url, routes, _ = server
    routes["/v1/quote"] = (200, b'{"quote": "' + b"0" * QUOTE_REPORT_MAX_BYTES + b'"}')
    with pytest.raises(AttestationFetchError, match=f"larger than {QUOTE_REPORT_MAX_BYTES}"):
        verify_service(lambda p: FakeService(url, PROVIDER), PROVIDER, now=NOW)


def test_slow_drip_quote_report_ends_at_the_timeout():
    """A provider dripping its ``/v1/quote`` body byte by byte cannot hold verification past the
    timeout (httpx's timeout bounds each read only)."""
    from signature_helpers import drip_server

    with drip_server(b'{"quote": "' + b"0" * 200 + b'"}', 0.05) as url:
        started = time.monotonic()
        with pytest.raises(AttestationFetchError, match="not complete within 0.5 s"):
            verify_service(lambda p: FakeService(url, PROVIDER), PROVIDER, now=NOW, timeout=0.5)
        assert time.monotonic() - started < 3


@pytest.mark.parametrize("url", ["http://[::1", "http://a\x00b"])
def test_a_malformed_service_url_is_a_typed_fetch_error(url):
    """A provider's on-chain URL that httpx cannot parse raised httpx.InvalidURL (no BrokerError:
    a traceback on the CLI, a 500 in the UI)."""
    with pytest.raises(AttestationFetchError, match="InvalidURL"):
        verify_service(lambda p: FakeService(url, PROVIDER), PROVIDER, now=NOW)
