"""``POST /v1/chat/completions`` goes through serve's hot route (:mod:`broker.proxy.hot_routes`),
not FastAPI's router: it keeps the API key, the web guard, the error shapes, the metrics and the
request log; is verified from the gateway's ``ZG-Res-Signature`` header without a signature
fetch (the relay in ``test_proxy_tamper.py`` counts the fetches); and every other method or path
still reaches the FastAPI app."""

from __future__ import annotations

import httpx
import pytest
from proxy_helpers import ThreadServer

from broker.proxy import ServeSettings, create_app

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

API_KEY = "sk-hot-route"
CHAT = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def serve(stack, user_broker):
    st, _ = stack
    settings = ServeSettings(
        provider=st.provider_address, api_key=API_KEY, funding_interval=600, extra_routes=True
    )
    app = create_app(user_broker, settings)
    with ThreadServer(app) as url:
        yield url, app


def test_hot_route_keeps_key_guard_and_error_shapes(serve):
    url, _app = serve
    auth = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=url, timeout=120) as c:
        r = c.post("/v1/chat/completions", json=CHAT)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
        r = c.post("/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer nope"})
        assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error"
        r = c.post("/v1/chat/completions", content=b"{not json", headers={**auth, **_json_ct()})
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
        r = c.post("/v1/chat/completions", json={"model": "tiny"}, headers=auth)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_messages"
        # the web guard still runs first: a cross-site simple POST is refused, nothing forwarded
        r = c.post(
            "/v1/chat/completions",
            content=b'{"messages":[{"role":"user","content":"x"}]}',
            headers={**auth, "Origin": "https://evil.example", "Content-Type": "text/plain"},
        )
        assert r.status_code == 403
        # other methods and paths still reach FastAPI
        assert c.get("/v1/chat/completions", headers=auth).status_code == 405
        assert c.post("/v1/chat/completions/", json=CHAT, headers=auth).status_code in (
            307,
            404,
        )


def _json_ct() -> dict[str, str]:
    return {"Content-Type": "application/json"}


def test_hot_route_answer_is_verified_billed_counted_and_logged(serve, stack, user_broker):
    url, app = serve
    st, _ = stack
    auth = {"Authorization": f"Bearer {API_KEY}"}
    store = user_broker.inference.fee_store
    before = store.get_totals(user_broker.address, st.provider_address)
    with httpx.Client(base_url=url, headers=auth, timeout=120) as c:
        c.post("/v1/chat/completions", json=CHAT)  # warm: service, session, connections
        r = c.post("/v1/chat/completions", json=CHAT)
        assert r.status_code == 200, r.text
        assert r.headers["X-0G-Verified"] == "true"
        assert r.headers["X-0G-Verification-Reason"] == "verified; binding=full"
        assert r.headers.get("ZG-Res-Signature", "").startswith("0x")
        fee = int(r.headers["X-0G-Fee"])
        after = store.get_totals(user_broker.address, st.provider_address)
        assert fee > 0 and after.total_fee - before.total_fee == 2 * fee  # committed already
        [latest] = store.recent_verifications(1, provider=st.provider_address)
        assert latest.chat_id == r.headers["ZG-Res-Key"] and latest.verified is True
        assert "ZG-Res-Signature header" in latest.detail  # no signature fetch
        metrics = c.get("/metrics").text
    assert 'route="/v1/chat/completions",status="200"' in metrics
    assert any(
        rec.route == "/v1/chat/completions" and rec.status == 200 and rec.fee == fee
        for rec in _request_log(app)
    )


def _request_log(app) -> list:
    """The dashboard's request log of ``app`` (broker.ui.activity.RequestLog)."""
    for middleware in app.user_middleware:
        log = middleware.kwargs.get("log")
        if log is not None:
            return log.recent()
    raise AssertionError("no request log middleware")
