"""Proxy parts without a chain: upstream error mapping, multipart helpers, chat rewriting, settings,
the CLI registration."""

from __future__ import annotations

import json

import httpx
import pytest
import typer
from pydantic import ValidationError
from typer.testing import CliRunner

from broker.proxy.errors import ProxyConfigError, ProxyHTTPError
from broker.proxy.multipart import append_field, boundary_of, ensure_field, form_fields
from broker.proxy.serving_chat import prepare_chat_request
from broker.proxy.serving_images import prepare_image_request
from broker.proxy.settings import ServeSettings
from broker.proxy.upstream import error_from_upstream

GATEWAY_LOW_BALANCE = (
    "validate request: insufficient balance: your locked balance is 1 0G, but the required minimum "
    "is 1.01 0G (breakdown: ...)"
)


@pytest.mark.parametrize(
    ("status", "body", "headers", "expect"),
    [
        (400, {"error": GATEWAY_LOW_BALANCE}, {}, (402, "insufficient_quota", None)),
        (402, {"error": {"message": "pay", "type": "x"}}, {}, (402, "insufficient_quota", None)),
        (
            429,
            {"error": "Too many requests."},
            {"Retry-After": "3"},
            (429, "rate_limit_error", "3"),
        ),
        (503, {"error": "busy"}, {}, (503, "upstream_overloaded", "1")),
        (500, {"error": "boom"}, {}, (502, "upstream_error", None)),
        (504, b"gateway timeout", {}, (504, "upstream_timeout", None)),
        (
            400,
            {"error": "unsupported endpoint: endpoint not supported"},
            {},
            (400, "invalid_request_error", None),
        ),
    ],
)
def test_error_mapping(status, body, headers, expect):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    exc = error_from_upstream(status, raw, httpx.Headers(headers))
    assert isinstance(exc, ProxyHTTPError)
    assert (exc.status_code, exc.type, exc.retry_after) == expect
    if status == 400 and "insufficient" in str(body):
        assert exc.message == GATEWAY_LOW_BALANCE and exc.code == "insufficient_balance"


def _form(fields: dict[str, str], boundary: str = "XyZ") -> bytes:
    parts = b"".join(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    )
    file = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="n.wav"\r\n'
        "Content-Type: audio/wav\r\n\r\n"
    ).encode() + b'name="model"\r\n'
    return parts + file + f"--{boundary}--\r\n".encode()


def test_multipart_helpers():
    ctype = 'multipart/form-data; boundary="XyZ"'
    assert boundary_of(ctype) == "XyZ" and boundary_of("multipart/form-data; boundary=a1") == "a1"
    body = _form({"n": "2", "prompt": "p"})
    fields = form_fields(body, ctype, "images/edits")
    assert fields["n"] == ["2"]
    assert "model" not in fields  # a file's bytes do not count
    added = ensure_field(body, ctype, fields, "model", "tiny")
    assert form_fields(added, ctype, "images/edits")["model"] == ["tiny"]
    assert added.endswith(b"--XyZ--\r\n")
    kept = _form({"model": "mine"})
    assert ensure_field(kept, ctype, form_fields(kept, ctype, "x"), "model", "tiny") == kept
    assert append_field(b"junk", "text/plain", "model", "tiny") == b"junk"
    # the worker's parser: text fields by name, a file's bytes not among them
    assert form_fields(added, ctype, "images/edits") == {
        "n": ["2"],
        "prompt": ["p"],
        "model": ["tiny"],
    }


def test_prepare_chat_request():
    body, stream = prepare_chat_request(
        {"messages": [{"role": "user", "content": "x"}], "stream": "true"}, "default-m"
    )
    data = json.loads(body)
    assert stream and data["stream"] is True and data["model"] == "default-m"
    assert data["stream_options"] == {"include_usage": True}
    body, _ = prepare_chat_request(
        {
            "messages": [1],
            "model": "mine",
            "stream": True,
            "stream_options": {"include_usage": False},
        },
        "d",
    )
    assert json.loads(body)["model"] == "mine"
    assert json.loads(body)["stream_options"] == {"include_usage": True}  # usage is billed
    with pytest.raises(ProxyHTTPError) as info:
        prepare_chat_request({"messages": []}, "d")
    assert info.value.status_code == 400 and info.value.param == "messages"


def test_prepare_image_request_fills_size_and_n_like_the_sdk():
    """§10.1: ``{model, prompt, size: "512x512", n: 1, ...body}``: defaults only when absent."""
    data = json.loads(prepare_image_request({"prompt": "a fox"}, "default-m"))
    assert data == {"prompt": "a fox", "model": "default-m", "size": "512x512", "n": 1}
    data = json.loads(
        prepare_image_request(
            {"prompt": "a fox", "model": "mine", "size": "64x64", "n": 3}, "default-m"
        )
    )
    assert (data["model"], data["size"], data["n"]) == ("mine", "64x64", 3)
    with pytest.raises(ProxyHTTPError) as info:
        prepare_image_request({"prompt": " "}, "d")
    assert info.value.status_code == 400 and info.value.message == "Missing prompt in request body"


def test_settings_defaults_and_secret(monkeypatch):
    monkeypatch.setenv("ZG_SERVE_API_KEY", "sk-secret-value")
    s = ServeSettings()
    assert (s.host, s.port, s.verify, s.images_timeout) == ("127.0.0.1", 3000, "warn", 600.0)
    assert "sk-secret-value" not in repr(s)
    with pytest.raises(ValidationError):
        ServeSettings(verify="sometimes")


def test_create_app_needs_provider():
    from broker.proxy import create_app

    with pytest.raises(ProxyConfigError):
        create_app(object(), ServeSettings())
    with pytest.raises(ProxyConfigError):
        create_app(object(), ServeSettings(provider="0x123"))


def test_cli_registers_serve_and_demo():
    from broker.cli import demo, serve

    app = typer.Typer()
    serve.register(app)
    demo.register(app)
    runner = CliRunner()
    out = runner.invoke(app, ["serve", "--help"]).output
    assert "--provider" in out and "--verify" in out and "--api-key" in out
    assert "--keep" in runner.invoke(app, ["demo", "--help"]).output
    bad = runner.invoke(app, ["serve", "--provider", "0x" + "1" * 40, "--verify", "maybe"])
    assert bad.exit_code == 2  # a bad option value is a usage error
