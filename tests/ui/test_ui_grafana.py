"""The Grafana dashboard and Prometheus configuration in ``config/``: every metric a panel queries
is one that the running servers export (``serve``'s and the gateway's ``/metrics``, scraped from a
real devnet stack), and the scrape configuration points at those endpoints without secrets."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

CONFIG = Path(__file__).resolve().parents[2] / "config"
DASHBOARD = CONFIG / "grafana" / "0g-broker-dashboard.json"

#: PromQL words that look like identifiers but are not metric names.
_PROMQL_WORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "le",
    "inf",
    "nan",
}
_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
    "summary": ("_sum", "_count", "_created"),
    "untyped": ("",),
}


def metric_names(expr: str) -> set[str]:
    """Metric names an expression reads: identifiers that are not functions (followed by ``(``),
    PromQL keywords, label names in ``by (...)`` / matchers, or strings and durations."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        rest = text[match.end() :].lstrip()
        word = match.group(0)
        if rest.startswith("(") or word.lower() in _PROMQL_WORDS:
            continue
        if re.fullmatch(r"\d+e\d+", word) or re.fullmatch(r"e\d+", word):
            continue
        names.add(word)
    return names


def _exprs(dashboard: dict) -> list[str]:
    out = []
    for panel in dashboard["panels"]:
        for sub in [panel, *panel.get("panels", [])]:
            out += [t["expr"] for t in sub.get("targets", []) if t.get("expr")]
    return out


def _exported(text: str) -> set[str]:
    names = set()
    for family in text_string_to_metric_families(text):
        names |= {family.name + s for s in _SUFFIXES.get(family.type, ("",))}
        names |= {s.name for s in family.samples}
    return names


def test_expression_parser_finds_metric_names():
    assert metric_names(
        'histogram_quantile(0.95, sum by (le, route) (rate(zg_a_bucket{route="/x"}[5m])))'
    ) == {"zg_a_bucket"}
    assert metric_names("increase(zg_fees_total[1h]) / 1e18 + zg_b") == {"zg_fees_total", "zg_b"}


def test_every_dashboard_metric_is_exported(ui_stack):
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = _exprs(dashboard)
    assert len(exprs) >= 15
    serve = httpx.get(
        ui_stack.serve_url + "/metrics",
        headers={"Authorization": f"Bearer {ui_stack.api_key}"},
        timeout=60,
    )
    gateway = httpx.get(
        ui_stack.stack.gateway_url + "/metrics",
        headers={"Authorization": f"Bearer {ui_stack.admin_key}"},
        timeout=60,
    )
    assert serve.status_code == gateway.status_code == 200
    exported = _exported(serve.text) | _exported(gateway.text)
    queried = set().union(*(metric_names(e) for e in exprs))
    assert queried, "no metric found in the dashboard"
    missing = sorted(queried - exported)
    assert not missing, f"the dashboard queries metrics nobody exports: {missing}"
    # each of serve, the gateway and the worker (exported by the gateway) has panels
    assert any(n.startswith("zg_serve_") for n in queried)
    assert any(n.startswith("zg_gateway_worker_") for n in queried)
    assert any(n.startswith("zg_gateway_") and "worker" not in n for n in queried)


def test_dashboard_is_portable():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_prometheus_config_scrapes_both_servers_without_secrets():
    conf = yaml.safe_load((CONFIG / "prometheus.yml").read_text())
    jobs = {j["job_name"]: j for j in conf["scrape_configs"]}
    assert set(jobs) == {"0g-serve", "0g-gateway"}
    for job in jobs.values():
        assert job["metrics_path"] == "/metrics"
        auth = job["authorization"]
        assert auth["type"] == "Bearer" and "credentials_file" in auth
        assert "credentials" not in auth  # keys come from files, never inline
    assert jobs["0g-serve"]["static_configs"][0]["targets"] == ["127.0.0.1:3000"]
    assert jobs["0g-gateway"]["static_configs"][0]["targets"] == ["127.0.0.1:3080"]


@pytest.mark.parametrize("expr", ["zg_serve_balance_neuron / 1e18"])
def test_division_by_a_literal_is_not_a_metric(expr):
    assert metric_names(expr) == {"zg_serve_balance_neuron"}
