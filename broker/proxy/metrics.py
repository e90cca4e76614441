"""Prometheus metrics of the local proxy: one :class:`~prometheus_client.CollectorRegistry` per app
(so several apps in one process, e.g. in tests, do not collide).

Metric names (prefix ``zg_serve_``): ``requests_total{route,status}``,
``request_duration_seconds{route}`` (histogram), ``upstream_responses_total{route,status}``,
``verifications_total{result,reason}``, ``fees_neuron_total`` (neuron accounted locally),
``balance_neuron{account}`` (gauges: ledger_total, ledger_available, sub_account,
sub_account_locked, unsettled_fee), ``funding_events_total{kind}``,
``funding_transferred_neuron_total``.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["CONTENT_TYPE_LATEST", "ProxyMetrics"]

_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class ProxyMetrics:
    """The proxy's metrics in their own registry; :meth:`render` gives the exposition text."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "zg_serve_requests", "Requests answered by the proxy.", ["route", "status"], registry=r
        )
        self.latency = Histogram(
            "zg_serve_request_duration_seconds",
            "Time to answer a request (to the first byte for streams).",
            ["route"],
            buckets=_BUCKETS,
            registry=r,
        )
        self.upstream_responses = Counter(
            "zg_serve_upstream_responses",
            "Provider responses by status (or timeout/unreachable).",
            ["route", "status"],
            registry=r,
        )
        self.verifications = Counter(
            "zg_serve_verifications",
            "Response-signature verification results.",
            ["result", "reason"],
            registry=r,
        )
        self.fees = Counter(
            "zg_serve_fees_neuron", "Fees accounted locally, in neuron.", registry=r
        )
        self.disputed_fees = Counter(
            "zg_serve_disputed_fees_neuron",
            "Fees the provider billed for responses refused by verify mode enforce, in neuron.",
            registry=r,
        )
        self.balance = Gauge(
            "zg_serve_balance_neuron", "Balances in neuron.", ["account"], registry=r
        )
        self.funding_events = Counter(
            "zg_serve_funding_events", "Auto-funding events.", ["kind"], registry=r
        )
        self.funding_transferred = Counter(
            "zg_serve_funding_transferred_neuron",
            "Neuron moved to the sub-account by auto-funding.",
            registry=r,
        )

        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def child(self, metric: Any, *values: str) -> Any:
        """``metric.labels(*values)``, looked up once per label combination and then reused (the
        label sets are small and fixed: routes, statuses, reasons)."""
        key = (id(metric), values)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*values)
        return found

    def render(self) -> bytes:
        """The Prometheus text exposition of this registry."""
        return generate_latest(self.registry)
