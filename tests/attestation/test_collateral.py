"""Collateral: fetching from a PCCS-shaped loopback server (no network), the disk cache, and TCB
evaluation of the real sample with the fetched collateral."""

from __future__ import annotations

import json
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from attestation_synth import SAMPLE_NOW

from broker.attestation import (
    CollateralCache,
    CollateralError,
    PccsCollateralFetcher,
    Verdict,
    verify_attestation,
)
from broker.attestation.collateral import evaluate_tcb


@pytest.fixture()
def pccs(near_sample):
    """A loopback PCCS serving the near collateral in PCS v4 shape; yields (base_url, hits)."""
    col = json.loads(near_sample["collateral"])
    hits: list[str] = []
    # Pretty-print the outer object so the verbatim slice (not a re-serialisation) is what verifies.
    tcb_body = (
        f'{{\n  "tcbInfo": {col["tcb_info"]},\n  "signature": "{col["tcb_info_signature"]}"\n}}'
    )
    qe_body = (
        f'{{"enclaveIdentity":{col["qe_identity"]}, "signature":"{col["qe_identity_signature"]}"}}'
    )

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output quiet
            pass

        def _send(self, body: bytes, headers: dict[str, str]) -> None:
            self.send_response(200)
            for k, v in headers.items():
                self.send_header(k, urllib.parse.quote(v))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            hits.append(self.path)
            path = urllib.parse.urlparse(self.path)
            q = urllib.parse.parse_qs(path.query)
            if path.path == "/tdx/certification/v4/tcb" and q.get("fmspc") == ["B0C06F000000"]:
                self._send(
                    tcb_body.encode(), {"TCB-Info-Issuer-Chain": col["tcb_info_issuer_chain"]}
                )
            elif path.path == "/tdx/certification/v4/qe/identity":
                self._send(
                    qe_body.encode(),
                    {"SGX-Enclave-Identity-Issuer-Chain": col["qe_identity_issuer_chain"]},
                )
            elif path.path == "/sgx/certification/v4/pckcrl" and q.get("ca") == ["platform"]:
                self._send(
                    bytes.fromhex(col["pck_crl"]),
                    {"SGX-PCK-CRL-Issuer-Chain": col["pck_crl_issuer_chain"]},
                )
            elif path.path == "/sgx/certification/v4/rootcacrl":
                self._send(col["root_ca_crl"].encode(), {})
            else:
                self.send_error(404)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", hits
    server.shutdown()
    server.server_close()


def test_fetch_cache_and_verify(pccs, near_sample, tmp_path):
    url, hits = pccs
    cache = CollateralCache(tmp_path / "collateral")
    with httpx.Client() as client:
        fetcher = PccsCollateralFetcher(url, cache=cache, client=client)
        col = fetcher.get_collateral("B0C06F000000", "platform", now=SAMPLE_NOW)
        assert evaluate_tcb(near_sample["quote"], col, now=SAMPLE_NOW).status == "UpToDate"
        assert (tmp_path / "collateral" / "tdx-B0C06F000000-platform.json").exists()
        n = len(hits)
        # second use: served from the cache, no request
        fetcher.get_collateral("B0C06F000000", "platform", now=SAMPLE_NOW)
        assert len(hits) == n
        # the verifier accepts the fetcher as its collateral source
        report = verify_attestation(
            near_sample["body"], expected_signer=None, collateral=fetcher, now=SAMPLE_NOW
        )
        assert report.tcb_status == "UpToDate"
        assert report.check("tcb_status").status.value == "passed"
        # after the collateral's nextUpdate the cache entry is stale and is fetched again
        fetcher.get_collateral("B0C06F000000", "platform", now=1789171200)
        assert len(hits) > n


def test_fetch_failure_skips_tcb_and_fails_closed(near_sample):
    fetcher = PccsCollateralFetcher("http://127.0.0.1:9", cache=False, timeout=2)
    with pytest.raises(CollateralError):
        fetcher.fetch("B0C06F000000", "platform")
    report = verify_attestation(
        near_sample["body"], expected_signer=None, collateral=fetcher, now=SAMPLE_NOW
    )
    tcb = report.check("tcb_status")
    assert tcb.status.value == "skipped" and "collateral unavailable" in tcb.reason
    assert report.verdict is not Verdict.VERIFIED


def test_bad_offline_collateral_is_reported(near_sample):
    report = verify_attestation(
        near_sample["body"], expected_signer=None, collateral="{}", now=SAMPLE_NOW
    )
    assert report.check("tcb_status").status.value == "skipped"
    assert "not valid QuoteCollateralV3" in report.check("tcb_status").reason
