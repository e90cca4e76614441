"""The dashboard inside ``serve`` (``/ui/``) over real HTTP against a devnet stack: its JSON
endpoints carry the same numbers as the library and the CLI, see the requests that went through
serve, and refuse anyone without serve's API key."""

from __future__ import annotations

import httpx
import openai
import pytest

from broker.ui.views import account_view
from broker.units import format_0g


@pytest.fixture(scope="module")
def http(ui_stack):
    with httpx.Client(
        base_url=ui_stack.serve_url,
        timeout=120,
        headers={"Authorization": f"Bearer {ui_stack.api_key}"},
    ) as client:
        yield client


def test_page_is_served_with_strict_headers_and_local_assets(ui_stack):
    page = httpx.get(ui_stack.serve_url + "/ui/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-frame-options"] == "DENY"
    # every script is local: no CDN, nothing from another origin
    assert (
        "http://" not in page.text.replace(ui_stack.serve_url, "") and "https://" not in page.text
    )
    chart = httpx.get(ui_stack.serve_url + "/ui/static/chart.umd.min.js")
    assert chart.status_code == 200 and "Chart.js v4" in chart.text[:200]
    assert httpx.get(ui_stack.serve_url + "/ui/static/chart.js.LICENSE.md").status_code == 200


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic c2stdWk="}]
)
def test_json_needs_serves_api_key(ui_stack, headers):
    for path in ("/ui/api/account", "/ui/api/requests", "/ui/api/providers", "/ui/api/funding"):
        resp = httpx.get(ui_stack.serve_url + path, headers=headers)
        assert resp.status_code == 401, path
        assert resp.json() == {"error": "Incorrect API key provided"}
    # the key is never taken from the URL
    resp = httpx.get(ui_stack.serve_url + f"/ui/api/account?api_key={ui_stack.api_key}")
    assert resp.status_code == 401
    verify = httpx.post(
        ui_stack.serve_url + f"/ui/api/providers/{ui_stack.stack.provider_address}/verify",
        headers=headers,
    )
    assert verify.status_code == 401


def test_config_says_a_key_is_needed_without_revealing_it(ui_stack):
    cfg = httpx.get(ui_stack.serve_url + "/ui/api/config").json()
    assert cfg["mode"] == "serve" and cfg["key_required"] is True and cfg["actions"] is False
    assert cfg["provider"] == ui_stack.stack.provider_address
    assert ui_stack.api_key not in str(cfg)
    assert cfg["user"] is None  # the user's address only with the key
    with_key = httpx.get(
        ui_stack.serve_url + "/ui/api/config",
        headers={"Authorization": f"Bearer {ui_stack.api_key}"},
    ).json()
    assert with_key["user"] == ui_stack.broker.address


def test_account_numbers_match_the_library(http, ui_stack):
    got = http.get("/ui/api/account").json()
    ledger = ui_stack.broker.ledger.get_ledger_with_detail()
    assert got["address"] == ui_stack.broker.address and got["ledger"] is True
    assert (got["total"], got["available"], got["locked"]) == (
        str(ledger.total),
        str(ledger.available),
        str(ledger.locked),
    )
    assert got["total_0g"] == format_0g(ledger.total)  # exact 0G text, no float rounding
    assert "e" not in got["total_0g"].lower()
    subs = {s["provider"]: s for s in got["inference"]}
    sub = subs[ui_stack.stack.provider_address]
    detail = ui_stack.broker.ledger.get_sub_account_with_detail(ui_stack.stack.provider_address)
    assert sub["balance"] == str(detail.balance) and sub["acknowledged"] is True
    assert sub["pending_refund"] == str(detail.pending_refund)
    assert got == account_view(ui_stack.broker) | {"inference": got["inference"]}


def test_requests_are_logged_with_fee_and_outcome_and_filterable(http, ui_stack):
    client = openai.OpenAI(
        base_url=ui_stack.serve_url + "/v1", api_key=ui_stack.api_key, max_retries=0, timeout=300
    )
    raw = client.images.with_raw_response.generate(
        prompt="a dashboard fox", n=1, size="64x64", response_format="b64_json"
    )
    fee = raw.headers["X-0G-Fee"]
    assert int(fee) > 0
    bad = httpx.post(
        ui_stack.serve_url + "/v1/images/generations",
        json={"n": 1},
        headers={"Authorization": f"Bearer {ui_stack.api_key}"},
    )
    assert bad.status_code == 400
    rows = http.get("/ui/api/requests").json()["requests"]
    ok = next(r for r in rows if r["status"] == 200 and r["route"] == "/v1/images/generations")
    assert ok["fee"] == fee and ok["verified"] == raw.headers["X-0G-Verified"] == "true"
    assert ok["latency_ms"] > 0 and ok["method"] == "POST"
    assert ok["chat_id"] == raw.headers["ZG-Res-Key"]
    assert ok["verification_reason"] == "verified"  # the stored result of that response
    err = next(r for r in rows if r["status"] == 400)
    assert err["verified"] == "" and err["fee"] == "0" and err["reason"]  # in words
    only_true = http.get("/ui/api/requests", params={"verified": "true"}).json()["requests"]
    assert only_true and all(r["verified"] == "true" for r in only_true)
    errors = http.get("/ui/api/requests", params={"verified": "error"}).json()["requests"]
    assert errors and all(r["status"] >= 400 for r in errors)
    refused = http.get("/ui/api/requests", params={"verified": "<script>"})
    assert refused.status_code == 400 and "verified must be one of" in refused.json()["error"]


def test_request_log_keeps_bounded_text(http, ui_stack):
    """The attack: any local program, even without serve's API key, can make serve log a request
    (a 401 or 404 is logged too); a 20 000-character path would be kept whole, 500 times over,
    and shown in the dashboard's table. The log keeps at most 200 characters of the route, as it
    does of the model and the chat id."""
    path = "/v1/chat/" + "a" * 20_000
    r = httpx.post(ui_stack.serve_url + path, json={"model": "m" * 5000})
    assert r.status_code in (401, 404)
    rows = http.get("/ui/api/requests").json()["requests"]
    row = next(r for r in rows if r["route"].startswith("/v1/chat/aaaa"))
    assert len(row["route"]) <= 201 and row["route"].endswith("…")
    assert len(row["model"]) <= 200 and len(row["reason"]) <= 300


def test_dashboard_errors_are_in_the_dashboards_shape(http, ui_stack):
    """Every error of the dashboard's JSON endpoints is ``{"error": "<words>"}`` with its status, as
    the page reads them: the endpoints' own, a bad query parameter, an unknown path, and a refusal
    of serve's web guard (a foreign page), not the OpenAI shape of ``/v1``."""
    cases = [
        (http.get("/ui/api/requests", params={"verified": "maybe"}), 400),
        (http.get("/ui/api/requests", params={"limit": "many"}), 400),
        (http.get("/ui/api/nothing-here"), 404),
        (http.get("/ui/api/account", headers={"Origin": "https://evil.example"}), 403),
        (http.get("/ui/api/account", headers={"Sec-Fetch-Site": "cross-site"}), 403),
    ]
    for r, status in cases:
        assert r.status_code == status, (r.request.url, r.text)
        body = r.json()
        assert isinstance(body.get("error"), str) and body["error"], (r.request.url, body)
    # /v1 keeps OpenAI's shape
    r = http.get("/v1/account", headers={"Origin": "https://evil.example"})
    assert r.status_code == 403 and isinstance(r.json()["error"], dict)


def test_providers_and_attestation_report(http, ui_stack):
    rows = http.get("/ui/api/providers").json()
    mine = next(p for p in rows["providers"] if p["provider"] == ui_stack.stack.provider_address)
    assert rows["served"] == ui_stack.stack.provider_address
    assert mine["service_type"] == "text-to-image" and mine["output_price"] == str(10**15)
    assert mine["output_price_0g"] == "0.001" and mine["verifiability"] == "TeeML"
    report = http.post(f"/ui/api/providers/{ui_stack.stack.provider_address}/verify").json()
    # the devnet provider has no TDX quote: the typed report fails closed and says why
    assert report["ok"] is False
    if report["report"] is not None:
        checks = report["report"]["checks"]
        assert checks and all(c["status"] in ("passed", "failed", "skipped") for c in checks)
        assert all(c["reason"] for c in checks if c["status"] != "passed")
    else:
        assert report["error"]
    bad = http.post("/ui/api/providers/0x123/verify")
    assert bad.status_code == 400 and "error" in bad.json()


def test_funding_state(http, ui_stack):
    got = http.get("/ui/api/funding").json()
    assert got["provider"] == ui_stack.stack.provider_address
    assert got["status"]["running"] is True and got["status"]["interval"] == 600
    assert isinstance(got["events"], list)


def test_funding_failures_are_kept_with_their_reason(http, ui_stack):
    from datetime import UTC, datetime

    from broker.funding.status import FundingEvent

    listener = ui_stack.app.state.ui.funding  # the listener serve's broker calls
    listener(
        FundingEvent(kind="check", provider=ui_stack.stack.provider_address, at=datetime.now(UTC))
    )
    listener(
        FundingEvent(
            kind="error",
            provider=ui_stack.stack.provider_address,
            at=datetime.now(UTC),
            detail="RPC unreachable: connection refused",
        )
    )
    events = http.get("/ui/api/funding").json()["events"]
    assert events[0]["kind"] == "error"
    assert events[0]["detail"] == "RPC unreachable: connection refused"
    assert all(e["kind"] in ("transfer", "error") for e in events)  # checks are not listed


def test_serve_offers_no_money_moving_action(ui_stack):
    headers = {"Authorization": f"Bearer {ui_stack.api_key}", "Origin": ui_stack.serve_url}
    resp = httpx.post(
        ui_stack.serve_url + "/ui/api/actions",
        json={"action": "deposit", "amount": "1"},
        headers=headers,
    )
    assert resp.status_code in (404, 405)
