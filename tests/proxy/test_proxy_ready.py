"""``/ready`` (readiness) beside ``/health`` (liveness), on a real devnet: all checks ok with a
running stack; the provider's gateway gone, no sub-account, and the chain gone (a loopback relay in
front of anvil that is shut down, which also makes auto-funding fail) are each named as the part
that is down, with 503, while ``/health`` still answers 200."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from devnet_helpers import key_hex, register_chatbot_service
from proxy_helpers import ThreadServer, free_port
from relay_helpers import RpcRelay

from broker.proxy import ServeSettings, create_app

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _ready(url: str) -> httpx.Response:
    return httpx.get(url + "/ready", timeout=30)


def test_ready_when_everything_is_up(stack, user_broker):
    st, _ = stack
    settings = ServeSettings(provider=st.provider_address, funding_interval=600)
    with ThreadServer(create_app(user_broker, settings)) as url:
        r = _ready(url)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ready"
    assert set(body["checks"]) == {"chain", "provider", "sub_account", "auto_funding"}
    assert all(c["ok"] for c in body["checks"].values()), body
    assert body["checks"]["auto_funding"]["detail"].startswith("running")


def test_provider_gone_and_no_sub_account(devnet, user_broker):
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    provider = register_chatbot_service(
        devnet, dead, model="m", input_price=1, output_price=1, owner_ack=True
    )
    settings = ServeSettings(provider=provider.address, auto_funding=False)
    with ThreadServer(create_app(user_broker, settings, run_startup=False)) as url:
        started = time.monotonic()
        r = _ready(url)
        elapsed = time.monotonic() - started
        health = httpx.get(url + "/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert r.status_code == 503
    checks = r.json()["checks"]
    assert r.json()["status"] == "not_ready"
    assert checks["chain"]["ok"] is True
    assert checks["provider"]["ok"] is False and "ConnectError" in checks["provider"]["detail"]
    assert checks["sub_account"] == {
        "ok": False,
        "detail": f"no sub-account with provider {provider.address}",
    }
    assert checks["auto_funding"] == {"ok": True, "detail": "disabled"}
    assert elapsed < 10  # short timeouts, run concurrently


def test_chain_gone(devnet, stack, user_broker):
    from broker.broker import create_broker

    st, _ = stack
    relay = RpcRelay(devnet.rpc_url)
    broker = create_broker(
        key_hex(user_broker.wallet),
        network="devnet",
        rpc_url=relay.url,
        ledger_address=devnet.ledger_address,
        inference_address=devnet.inference_address,
    )
    try:
        settings = ServeSettings(provider=st.provider_address, funding_interval=0.5)
        with ThreadServer(create_app(broker, settings)) as url:
            up = _ready(url)
            relay.stop()
            deadline = time.monotonic() + 30
            while True:  # until auto-funding has tried (and failed) once
                down = _ready(url)
                if not down.json()["checks"]["auto_funding"]["ok"]:
                    break
                assert time.monotonic() < deadline, down.text
                time.sleep(0.3)
            health = httpx.get(url + "/health")
    finally:
        broker.inference.close()
    assert up.status_code == 200, up.text
    assert down.status_code == 503 and health.status_code == 200
    checks = down.json()["checks"]
    assert checks["chain"]["ok"] is False and checks["chain"]["detail"]
    assert checks["provider"]["ok"] is True  # the gateway is still there
    assert checks["sub_account"]["ok"] is False  # it is read from the chain
    assert checks["auto_funding"]["detail"].startswith("last check failed")


def test_ready_never_shows_the_rpc_urls_secret(devnet, stack, user_broker):
    """The attack: any local program may call ``/ready`` (no API key, by design), and RPC URLs often
    carry an API key in their path or query (``https://host/v2/<key>``). With the node gone, the
    chain check's reason must say what failed without the URL's path or query."""
    from broker.broker import create_broker

    st, _ = stack
    secret = "rpc-key-0123456789abcdef"
    relay = RpcRelay(devnet.rpc_url)
    broker = create_broker(
        key_hex(user_broker.wallet),
        network="devnet",
        rpc_url=f"{relay.url}/v2/{secret}?apikey={secret}",
        ledger_address=devnet.ledger_address,
        inference_address=devnet.inference_address,
    )
    try:
        settings = ServeSettings(
            provider=st.provider_address, api_key="sk-ready-test", auto_funding=False
        )
        with ThreadServer(create_app(broker, settings, run_startup=False)) as url:
            relay.stop()
            down = _ready(url)
    finally:
        broker.inference.close()
    assert down.status_code == 503
    chain = down.json()["checks"]["chain"]
    assert chain["ok"] is False and "unreachable" in chain["detail"], chain
    assert secret not in down.text, down.text


def test_a_start_up_that_fails_after_auto_funding_began_stops_it(stack, user_broker, monkeypatch):
    """The attack: a start-up step after auto-funding has begun fails (here the provider pool).
    Nothing the start-up began may outlive it: no scheduler left moving the user's funds for a
    proxy that never served, and the error is the one ``serve`` reports."""
    import asyncio

    import broker.proxy.app as app_module
    from broker.funding.scheduler import THREAD_NAME_PREFIX

    def funding_threads() -> set[str]:
        return {t.name for t in threading.enumerate() if t.name.startswith(THREAD_NAME_PREFIX)}

    before = funding_threads()  # other tests' schedulers, alive for their own scopes
    st, _ = stack
    app = create_app(user_broker, ServeSettings(provider=st.provider_address, funding_interval=0.5))

    def broken_pool(*_args, **_kwargs):
        raise RuntimeError("the provider pool could not be built")

    monkeypatch.setattr(app_module, "Upstream", broken_pool)

    async def start() -> None:
        async with app.router.lifespan_context(app):
            pass

    with pytest.raises(RuntimeError, match="provider pool"):
        asyncio.run(start())
    assert isinstance(app.state.startup_error, RuntimeError)
    assert user_broker.inference.auto_funding_status(st.provider_address).running is False
    deadline = time.monotonic() + 5
    while funding_threads() - before:
        assert time.monotonic() < deadline, funding_threads() - before
        time.sleep(0.05)
