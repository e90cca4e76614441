"""verify_service and ``0g-broker verify`` against a real loopback HTTP server serving ``/v1/quote``
(synthetic TDX reports and our own gateway's no-TEE report), with a stand-in service lookup."""

from __future__ import annotations

import json
import sys
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "attestation"))
from attestation_synth import NOW, SyntheticTdx

from broker.attestation import AttestationFetchError, AttestationPolicy, Verdict
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
    """Loopback server; ``routes[path] = (status, body_bytes)``; yields (base_url, routes, hits)."""
    routes: dict[str, tuple[int, bytes]] = {}
    hits: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            hits.append(self.path)
            status, body = routes.get(self.path, (404, b"not found"))
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
    routes["/v1/proxy/attestation/report?model=test-model"] = (
        200,
        json.dumps(llm.report()).encode(),
    )
    info = json.dumps({"TargetSeparated": True, "TargetTeeAddress": llm.signer})
    service = FakeService(url, synth.signer, info)
    report = verify_service(
        lambda p: service, PROVIDER, tmp_path, now=NOW, policy=NO_TCB, root_ca=synth.pki.root_der
    )
    assert report.verified and report.sub_reports["llm"].verified
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
