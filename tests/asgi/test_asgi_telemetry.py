"""``fastapi_telemetry_off``: FastAPI's per-request OpenTelemetry hook stops looking up the global
providers (what serve and the gateway are built with)."""

from __future__ import annotations

import inspect

from fastapi import FastAPI
from fastapi.testclient import TestClient

from broker.asgi.telemetry import fastapi_telemetry_off


def _app(**options) -> FastAPI:
    app = FastAPI(**options)

    @app.get("/ping")
    def ping() -> dict:
        return {"ok": True}

    return app


def _provider_lookups(app: FastAPI, monkeypatch) -> int:
    from opentelemetry import trace

    calls = []
    real = trace.get_tracer_provider
    monkeypatch.setattr(trace, "get_tracer_provider", lambda: calls.append(1) or real())
    with TestClient(app) as client:
        for _ in range(5):
            assert client.get("/ping").json() == {"ok": True}
    return len(calls)


def test_the_options_switch_off_every_signal_fastapi_offers():
    options = fastapi_telemetry_off()
    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        assert options == {}
        return
    assert options == {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    _app(**options)  # accepted by the installed FastAPI


def test_no_provider_lookup_per_request_with_the_options(monkeypatch):
    if not fastapi_telemetry_off():
        return  # an older FastAPI has no per-request hook
    assert _provider_lookups(_app(), monkeypatch) >= 5  # the default looks up every request
    assert _provider_lookups(_app(**fastapi_telemetry_off()), monkeypatch) == 0


def test_serve_and_the_gateway_are_built_with_the_options():
    from broker.provider import app as gateway_app
    from broker.proxy import app as serve_app

    for module in (serve_app, gateway_app):
        assert "**fastapi_telemetry_off()" in inspect.getsource(module.create_app), module
