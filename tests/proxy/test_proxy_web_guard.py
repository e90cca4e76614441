"""A web page cannot use ``serve`` (issue #9 §2): the real ``serve`` without an API key (the
default) on loopback, on the devnet provider stack, attacked the way a browser page can:
cross-origin "simple" POSTs (``text/plain``, forms, multipart), DNS rebinding (a foreign ``Host``),
no-cors GETs (``Sec-Fetch-Site: cross-site``) and CORS preflights. Every attack is refused before
anything is paid or forwarded; the ``openai`` client, same-origin pages and configured origins
still work."""

from __future__ import annotations

import json

import httpx
import openai
import pytest
from proxy_helpers import ThreadServer

from broker.proxy import ServeSettings, create_app

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

EVIL = "https://evil.example"
IMAGE_JOB = json.dumps({"prompt": "a fox", "n": 4, "size": "64x64"}).encode()
CHAT = json.dumps({"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}).encode()
APP_ORIGIN = "http://localhost:5173"


@pytest.fixture(scope="module")
def serve(stack, user_broker):
    """``serve`` with the defaults of ``0g-broker serve`` (no API key) plus one allowed origin."""
    st, _ = stack
    settings = ServeSettings(
        provider=st.provider_address,
        funding_interval=600,
        allowed_origins=[APP_ORIGIN],
        extra_routes=True,
    )
    with ThreadServer(create_app(user_broker, settings)) as url:
        yield url


def _fees(stack, user_broker) -> tuple[int, int]:
    st, _ = stack
    local = user_broker.inference.fee_store.get_totals(
        user_broker.address, st.provider_address
    ).total_fee
    return local, st.gateway.ledger.unsettled_fee(user_broker.address)


def _multipart(field: str) -> tuple[bytes, str]:
    boundary = "----WebKitFormBoundaryx"
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="a"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\nxx\r\n--{boundary}\r\n"
        f'Content-Disposition: form-data; name="prompt"\r\n\r\nfox\r\n--{boundary}--\r\n'
    )
    return body.encode(), f"multipart/form-data; boundary={boundary}"


def _attacks(port: int) -> list[tuple[str, str, str, dict, bytes | None]]:
    """(name, method, path, headers, body): what a page in the user's browser can send."""
    cross = {"Origin": EVIL, "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}
    rebound = {
        "Host": f"evil.example:{port}",
        "Origin": f"http://evil.example:{port}",
        "Sec-Fetch-Site": "same-origin",
    }
    image_mp, image_ct = _multipart("image")
    audio_mp, audio_ct = _multipart("file")
    return [
        (
            "text/plain image POST, n=4",
            "POST",
            "/v1/images/generations",
            {**cross, "Content-Type": "text/plain;charset=UTF-8"},
            IMAGE_JOB,
        ),
        (
            "text/plain image POST without Origin",
            "POST",
            "/v1/images/generations",
            {"Content-Type": "text/plain"},
            IMAGE_JOB,
        ),
        (
            "text/plain async image POST",
            "POST",
            "/v1/async/images/generations",
            {**cross, "Content-Type": "text/plain"},
            IMAGE_JOB,
        ),
        (
            "form chat POST",
            "POST",
            "/v1/chat/completions",
            {**cross, "Content-Type": "application/x-www-form-urlencoded"},
            CHAT,
        ),
        (
            "JSON chat POST from a foreign origin",
            "POST",
            "/v1/chat/completions",
            {"Origin": EVIL, "Content-Type": "application/json"},
            CHAT,
        ),
        ("chat POST without Content-Type", "POST", "/v1/chat/completions", {}, CHAT),
        (
            "multipart edit POST from a form",
            "POST",
            "/v1/images/edits",
            {**cross, "Content-Type": image_ct},
            image_mp,
        ),
        (
            "multipart audio POST from a form",
            "POST",
            "/v1/audio/transcriptions",
            {**cross, "Content-Type": audio_ct},
            audio_mp,
        ),
        (
            "sandboxed iframe (Origin: null)",
            "POST",
            "/v1/chat/completions",
            {"Origin": "null", "Content-Type": "application/json"},
            CHAT,
        ),
        (
            "another local port",
            "POST",
            "/v1/chat/completions",
            {"Origin": "http://127.0.0.1:8888", "Content-Type": "application/json"},
            CHAT,
        ),
        (
            "verify POST text/plain",
            "POST",
            "/v1/verify",
            {**cross, "Content-Type": "text/plain"},
            b'{"id": "x"}',
        ),
        ("DNS rebinding: account", "GET", "/v1/account", rebound, None),
        ("DNS rebinding: metrics", "GET", "/metrics", rebound, None),
        ("DNS rebinding: models", "GET", "/v1/models", rebound, None),
        ("DNS rebinding: health", "GET", "/health", rebound, None),
        (
            "DNS rebinding: image POST",
            "POST",
            "/v1/images/generations",
            {**rebound, "Content-Type": "application/json"},
            IMAGE_JOB,
        ),
        (
            "DNS rebinding, look-alike name",
            "GET",
            "/v1/account",
            {"Host": f"127.0.0.1.evil.example:{port}"},
            None,
        ),
        (
            "no-cors GET of the account",
            "GET",
            "/v1/account",
            {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"},
            None,
        ),
        ("cors GET of the account", "GET", "/v1/account", {"Origin": EVIL}, None),
        (
            "preflight from a foreign origin",
            "OPTIONS",
            "/v1/chat/completions",
            {
                "Origin": EVIL,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type",
            },
            None,
        ),
        (
            "preflight under a rebound Host",
            "OPTIONS",
            "/v1/chat/completions",
            {
                "Host": f"evil.example:{port}",
                "Origin": APP_ORIGIN,
                "Access-Control-Request-Method": "POST",
            },
            None,
        ),
    ]


def test_browser_attacks_refused_and_nothing_billed(serve, stack, user_broker):
    before = _fees(stack, user_broker)
    port = int(serve.rsplit(":", 1)[1])
    attacks = _attacks(port)
    refused, wrongly_accepted, server_errors = [], [], []
    with httpx.Client(base_url=serve, timeout=60) as c:
        for name, method, path, headers, body in attacks:
            r = c.request(method, path, headers=headers, content=body)
            if r.status_code >= 500:
                server_errors.append((name, r.status_code))
            elif r.status_code in (403, 415):
                err = r.json()["error"]  # serve's OpenAI error shape
                assert set(err) == {"message", "type", "code", "param"}, name
                assert err["code"] in (
                    "host_not_allowed",
                    "origin_not_allowed",
                    "cross_site_request",
                    "unsupported_media_type",
                ), name
                assert "access-control-allow-origin" not in r.headers, name
                refused.append(name)
            else:
                wrongly_accepted.append((name, r.status_code))
    print(
        f"\nweb-guard attacks on serve: tried {len(attacks)}, refused {len(refused)}, "
        f"wrongly accepted {len(wrongly_accepted)}, 5xx {len(server_errors)}"
    )
    assert not wrongly_accepted and not server_errors
    assert len(refused) == len(attacks) == 21
    assert _fees(stack, user_broker) == before  # nothing paid, forwarded or billed


def test_refusal_messages_say_what_to_configure(serve):
    port = int(serve.rsplit(":", 1)[1])
    r = httpx.get(serve + "/v1/account", headers={"Host": f"evil.example:{port}"})
    assert r.status_code == 403 and "ZG_SERVE_ALLOWED_HOSTS" in r.json()["error"]["message"]
    r = httpx.get(serve + "/v1/account", headers={"Origin": EVIL})
    assert "ZG_SERVE_ALLOWED_ORIGINS" in r.json()["error"]["message"]
    r = httpx.post(
        serve + "/v1/images/generations", content=IMAGE_JOB, headers={"Content-Type": "text/plain"}
    )
    assert r.status_code == 415 and r.json()["error"]["type"] == "invalid_request_error"
    assert "application/json" in r.json()["error"]["message"]
    # refusals are counted like other responses
    metrics = httpx.get(serve + "/metrics").text
    assert 'zg_serve_requests_total{route="/v1/images/generations",status="415"}' in metrics


def test_refusals_on_pixazo_paths_are_in_pixazo_shape(serve, stack, user_broker):
    """A page attacking serve's Pixazo-compatible endpoint is refused in that API's own error
    shape (``{"error": reason, "message": ...}``), as every other Pixazo error, and nothing is
    billed; the OpenAI paths keep the OpenAI shape."""
    port = int(serve.rsplit(":", 1)[1])
    before = _fees(stack, user_broker)
    path = "/z-image-turbo-834/v1/z-image-turbo-request"
    body = json.dumps({"prompt": "a fox"}).encode()
    cases = [
        ({"Host": f"evil.example:{port}", "Content-Type": "application/json"}, 403, "Forbidden"),
        ({"Origin": EVIL, "Content-Type": "application/json"}, 403, "Forbidden"),
        ({"Sec-Fetch-Site": "cross-site", "Content-Type": "application/json"}, 403, "Forbidden"),
        ({"Content-Type": "text/plain"}, 415, "Unsupported Media Type"),
    ]
    for headers, status, reason in cases:
        r = httpx.post(serve + path, content=body, headers=headers)
        assert r.status_code == status, (headers, r.text)
        assert r.json()["error"] == reason and r.json()["message"], r.text
    r = httpx.get(serve + "/v2/requests/status/x", headers={"Origin": EVIL})
    assert r.status_code == 403 and r.json()["error"] == "Forbidden"
    preflight = httpx.options(
        serve + path, headers={"Origin": EVIL, "Access-Control-Request-Method": "POST"}
    )
    assert preflight.status_code == 403 and preflight.json()["error"] == "Forbidden"
    r = httpx.get(serve + "/v1/account", headers={"Origin": EVIL})
    assert r.json()["error"]["code"] == "origin_not_allowed"
    assert _fees(stack, user_broker) == before


def test_openai_client_and_same_origin_pages_still_work(serve, stack):
    client = openai.OpenAI(base_url=f"{serve}/v1", api_key="unused", max_retries=0, timeout=120)
    assert client.models.list().data
    answer = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "hi"}]
    )
    assert answer.choices[0].message.content == "hello there"
    # a page served by serve itself (our dashboard): same origin, Sec-Fetch-Site same-origin
    port = int(serve.rsplit(":", 1)[1])
    for host in (f"127.0.0.1:{port}", f"localhost:{port}"):
        r = httpx.get(
            serve + "/v1/account",
            headers={"Host": host, "Origin": f"http://{host}", "Sec-Fetch-Site": "same-origin"},
        )
        assert r.status_code == 200, r.text
        assert "access-control-allow-origin" not in r.headers


def test_allowed_origin_gets_cors(serve):
    with httpx.Client(base_url=serve, timeout=120) as c:
        r = c.options(
            "/v1/chat/completions",
            headers={
                "Origin": APP_ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )
        assert r.status_code == 204
        assert r.headers["access-control-allow-origin"] == APP_ORIGIN
        assert r.headers["access-control-allow-headers"] == "authorization, content-type"
        r = c.post(
            "/v1/chat/completions",
            content=CHAT,
            headers={
                "Origin": APP_ORIGIN,
                "Content-Type": "application/json",
                "Sec-Fetch-Site": "same-site",
            },
        )
        assert r.status_code == 200, r.text
        assert r.headers["access-control-allow-origin"] == APP_ORIGIN
        assert "X-0G-Fee" in r.headers["access-control-expose-headers"]
        assert int(r.headers["x-0g-fee"]) > 0


def test_guard_settings_from_the_environment(monkeypatch, tmp_path):
    from pydantic import ValidationError

    from broker.proxy.errors import ProxyConfigError

    monkeypatch.setenv("ZG_SERVE_ALLOWED_HOSTS", "broker.lan, box:8080")
    monkeypatch.setenv("ZG_SERVE_ALLOWED_ORIGINS", '["http://localhost:5173"]')
    s = ServeSettings()
    assert s.allowed_hosts == ["broker.lan", "box:8080"]
    assert s.allowed_origins == ["http://localhost:5173"]
    for bad in ("*", "localhost:5173", "http://x.example/path"):
        monkeypatch.setenv("ZG_SERVE_ALLOWED_ORIGINS", bad)
        with pytest.raises(ValidationError):
            ServeSettings()
    monkeypatch.delenv("ZG_SERVE_ALLOWED_ORIGINS")
    key_file = tmp_path / "key"
    key_file.write_text("  sk-in-a-file  \n")
    s = ServeSettings(api_key_file=key_file)
    assert s.api_key.get_secret_value() == "sk-in-a-file" and "sk-in-a-file" not in repr(s)
    with pytest.raises(ProxyConfigError, match="not both") as info:
        ServeSettings(api_key="sk-typed", api_key_file=key_file)
    assert "sk-typed" not in str(info.value)
    with pytest.raises(ProxyConfigError, match="empty"):
        ServeSettings(api_key=" ")


async def test_bound_address_is_an_allowed_host():
    """``serve --host 192.168.1.5``: clients call it by that address; other names are refused."""
    settings = ServeSettings(provider="0x" + "1" * 40, host="192.168.1.5")
    app = create_app(object(), settings, run_startup=False)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://192.168.1.5:3000") as c:
        assert (await c.get("/health")).status_code != 403  # reaches the app
        r = await c.get("/health", headers={"Host": "evil.example:3000"})
        assert r.status_code == 403 and r.json()["error"]["code"] == "host_not_allowed"
