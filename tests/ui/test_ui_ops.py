"""The provider's ops page on ``provider serve`` (``/ui/``, ``/ui/api/ops``) and the gateway's
``/metrics``, against a real devnet stack: behind the admin key, and showing unsettled fees per user
and a settlement (batch, amount, transaction hash, status) once one happens."""

from __future__ import annotations

import httpx
import openai
import pytest
from devnet_helpers import settle_once_recording

from broker.provider import ops as queries


@pytest.fixture(scope="module")
def admin(ui_stack):
    with httpx.Client(
        base_url=ui_stack.stack.gateway_url,
        timeout=60,
        headers={"Authorization": f"Bearer {ui_stack.admin_key}"},
    ) as client:
        yield client


def _generate(ui_stack) -> str:
    client = openai.OpenAI(
        base_url=ui_stack.serve_url + "/v1", api_key=ui_stack.api_key, max_retries=0, timeout=300
    )
    raw = client.images.with_raw_response.generate(
        prompt="ops fox", n=1, size="64x64", response_format="b64_json"
    )
    return raw.headers["X-0G-Fee"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer nope"}])
def test_ops_and_metrics_need_the_admin_key(ui_stack, headers):
    for path in ("/ui/api/ops", "/metrics"):
        resp = httpx.get(ui_stack.stack.gateway_url + path, headers=headers)
        assert resp.status_code == 401 and resp.json() == {"error": "wrong or missing admin key"}
    # the page itself holds no data and is served; the user's API key is not the admin key
    assert httpx.get(ui_stack.stack.gateway_url + "/ui/").status_code == 200
    resp = httpx.get(
        ui_stack.stack.gateway_url + "/ui/api/ops",
        headers={"Authorization": f"Bearer {ui_stack.api_key}"},
    )
    assert resp.status_code == 401


def test_without_an_admin_key_the_ops_page_is_off(ui_stack, monkeypatch):
    gw = ui_stack.stack.gateway
    monkeypatch.delitem(gw.extra, "admin_key")
    monkeypatch.delenv("ZG_PROVIDER_ADMIN_KEY", raising=False)
    monkeypatch.delenv("ZG_PROVIDER_ADMIN_KEY_FILE", raising=False)
    resp = httpx.get(
        ui_stack.stack.gateway_url + "/ui/api/ops", headers={"Authorization": "Bearer anything"}
    )
    assert resp.status_code == 403 and "ZG_PROVIDER_ADMIN_KEY" in resp.json()["error"]
    cfg = httpx.get(ui_stack.stack.gateway_url + "/ui/api/config").json()
    assert cfg["enabled"] is False


def test_admin_key_from_a_file(ui_stack, monkeypatch, tmp_path):
    gw = ui_stack.stack.gateway
    monkeypatch.delitem(gw.extra, "admin_key")
    monkeypatch.delenv("ZG_PROVIDER_ADMIN_KEY", raising=False)
    key_file = tmp_path / "admin.key"
    key_file.write_text("from-a-file\n")
    monkeypatch.setenv("ZG_PROVIDER_ADMIN_KEY_FILE", str(key_file))
    resp = httpx.get(
        ui_stack.stack.gateway_url + "/ui/api/ops", headers={"Authorization": "Bearer from-a-file"}
    )
    assert resp.status_code == 200
    monkeypatch.setenv("ZG_PROVIDER_ADMIN_KEY_FILE", str(tmp_path / "missing"))
    resp = httpx.get(
        ui_stack.stack.gateway_url + "/ui/api/ops", headers={"Authorization": "Bearer from-a-file"}
    )
    assert resp.status_code == 403 and "cannot read" in resp.json()["error"]
    assert str(tmp_path) not in resp.text or "missing" not in resp.text.split("cannot read")[0]


def test_unsettled_then_settlement_shown(admin, ui_stack):
    fee = _generate(ui_stack)
    user = ui_stack.broker.address
    data = admin.get("/ui/api/ops").json()
    assert data["provider"] == ui_stack.stack.provider_address
    mine = next(u for u in data["unsettled"] if u["user"] == user)
    assert int(mine["unsettled"]) >= int(fee) > 0 and mine["requests"] >= 1
    assert int(data["unsettled_total"]) >= int(mine["unsettled"])
    assert data["worker"]["up"] is True and data["worker"]["loaded"] in (True, False)
    assert data["generations"] and data["generations"][0]["status"] == 200
    assert sum(m["ok"] for m in data["traffic"]) >= 1
    owed = int(mine["unsettled"]) + int(mine["settling"])

    report, receipts = settle_once_recording(ui_stack.stack.gateway)
    assert receipts, report
    data = admin.get("/ui/api/ops").json()
    assert all(u["user"] != user for u in data["unsettled"])
    batch = next(b for b in data["settlements"] if b["user"] == user)
    assert batch["status"] == "confirmed" and batch["result"] == "SUCCESS"
    assert batch["amount"] == batch["paid"] == str(owed) and batch["requests"] >= 1
    assert batch["tx_hash"] and batch["tx_hash"].startswith("0x")
    tx_hashes = {"0x" + bytes(r["transactionHash"]).hex() for r in receipts}
    assert batch["tx_hash"] in tx_hashes
    assert data["settlement_counts"]["confirmed"] >= 1 and not data["pending"]


def test_queries_read_exact_fees(ui_stack):
    db = ui_stack.stack.gateway.db
    for row in queries.settlements(db):
        assert isinstance(row.amount, int) and row.status in ("prepared", "confirmed", "rejected")
    counts = queries.request_counts(db)
    assert set(counts) >= {"pending", "unsettled", "settling", "settled", "failed"}


def test_metrics_exported(admin, ui_stack):
    text = admin.get("/metrics").text
    for name in (
        "zg_gateway_requests_total",
        "zg_gateway_request_duration_seconds_bucket",
        "zg_gateway_unsettled_fee_neuron",
        "zg_gateway_settlement_batches",
        "zg_gateway_worker_up 1.0",
        "zg_gateway_worker_queue_length",
    ):
        assert name in text, name
    assert ui_stack.admin_key not in text


def test_rate_limit_rejections_and_errors_counted_per_minute():
    from prometheus_client import generate_latest

    from broker.ui.ops import GatewayActivity

    activity = GatewayActivity()
    activity.observe("/v1/proxy/images/generations", 200, 1.5)
    activity.observe("/v1/proxy/images/generations", 429, 0.001)
    activity.observe("/v1/proxy/chat/completions", 502, 0.2)
    activity.observe("/v1/proxy/async/jobs/abc", 404, 0.01)
    minute = activity.traffic()[-1]
    assert (
        minute["ok"],
        minute["rate_limited"],
        minute["client_errors"],
        minute["server_errors"],
    ) == (1, 1, 1, 1)
    text = generate_latest(activity.registry).decode()
    assert 'zg_gateway_rate_limited_total{route="/v1/proxy/images/generations"} 1.0' in text
    assert 'route="/v1/proxy/async/jobs/{id}"' in text and "abc" not in text  # bounded labels
    gens = activity.generations()
    assert [g["status"] for g in gens] == [429, 200] and gens[1]["ms"] == 1500.0
