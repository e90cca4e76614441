"""The gateway's per-IP limits cannot be dodged by writing ``X-Forwarded-For`` / ``X-Real-IP``
(issue #9 §4): those headers name the client only when the peer is a configured trusted proxy, and
then the first untrusted hop from the right is the client. And its per-user 429 names the limit that
was hit (issue #10): six quick requests spend the burst, not "30 requests/min".

Real gateways on loopback (devnet registration, ``build_gateway`` from ``ProviderSettings``). The
client sends from ``127.0.0.1`` (a direct client) or from ``127.0.0.2`` (the configured trusted
proxy)."""

from __future__ import annotations

import uuid

import httpx
import openai
import pytest
from devnet_helpers import (
    devnet_gateway_settings,
    funded_user_broker,
    provider_stack,
    register_acknowledged_service,
)
from fastapi import FastAPI
from server_helpers import UvicornThread, free_port

from broker.chain.connection import connect
from broker.chain.contracts import InferenceServingContract
from broker.chain.sender import TransactionSender
from broker.provider.app import create_app
from broker.provider.limits import IP_MESSAGE, Limits, client_ip
from broker.provider.serve import UVICORN_OPTIONS, build_gateway
from broker.provider.settings import ProviderSettings
from broker.provider.tee import LocalTeeSigner
from broker.proxy import ServeSettings
from broker.proxy import create_app as create_serve_app

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ZG = 10**18
PROXY = "127.0.0.2"
BURST = 3


def _contract(devnet, account) -> InferenceServingContract:
    w3 = connect(devnet.rpc_url)
    return InferenceServingContract(w3, devnet.inference_address, TransactionSender(w3, account))


@pytest.fixture(scope="module")
def gateway(devnet, tmp_path_factory):
    """A gateway whose handler routes allow a burst of 3 per IP (no refill during the test) and
    that trusts ``127.0.0.2`` as its reverse proxy (``ZG_PROVIDER_TRUSTED_PROXIES``)."""
    from broker.devnet import fund_new_account

    tmp = tmp_path_factory.mktemp("xff")
    provider = fund_new_account(devnet, amount_neuron=1000 * ZG)
    port = free_port()
    settings = devnet_gateway_settings(
        devnet,
        provider,
        tmp,
        port=port,
        tee_signer_key="0x" + "33" * 32,
        model="xff-model",
        target_url="http://127.0.0.1:9",
        handler_ip_rps=0.001,
        handler_ip_burst=BURST,
        per_ip_rps=0.001,
        per_ip_burst=BURST,
        trusted_proxies=f"{PROXY}/32",
    )
    signer = LocalTeeSigner(bytes.fromhex("33" * 32))
    register_acknowledged_service(devnet, provider, settings, signer.address)
    gw = build_gateway(settings, signer=signer, with_scheduler=False)
    # served as ``0g-broker provider serve`` serves it
    with UvicornThread(create_app(gw), port, start_polls=250, **UVICORN_OPTIONS) as server:
        yield gw, server.url
    gw.db.dispose()


def _client(url: str, source: str) -> httpx.Client:
    return httpx.Client(
        base_url=url, timeout=10, transport=httpx.HTTPTransport(local_address=source)
    )


def _fresh_buckets(gw) -> None:
    gw.limits.ip = type(gw.limits.ip)(0.001, BURST)
    gw.limits.handler_ip = type(gw.limits.handler_ip)(0.001, BURST)


def _spoofed(n: int) -> dict[str, str]:
    return {"X-Forwarded-For": f"198.51.100.{n % 250}", "X-Real-IP": f"203.0.113.{n % 250}"}


def test_direct_client_cannot_pick_its_identity(gateway):
    gw, url = gateway
    assert [str(n) for n in gw.limits.trusted_proxies] == [f"{PROXY}/32"]
    _fresh_buckets(gw)
    tried = refused = 0
    with _client(url, "127.0.0.1") as c:
        for path in ("/v1/models", f"/v1/proxy/signature/{uuid.uuid4()}"):
            codes = [c.get(path, headers=_spoofed(i)).status_code for i in range(BURST + 5)]
            tried += len(codes)
            refused += codes.count(429)
            # a new X-Forwarded-For / X-Real-IP per request does not give a new bucket
            assert codes[BURST:] == [429] * 5, (path, codes)
            assert all(code < 500 for code in codes)
        r = c.get("/v1/quote", headers=_spoofed(99))
        assert r.status_code == 429 and r.json() == {"error": IP_MESSAGE}
    print(
        f"\nXFF spoofing against the gateway: tried {tried}, refused {refused} "
        f"(the {2 * BURST} within the bursts are served), wrongly accepted 0, 5xx 0"
    )


def test_trusted_proxy_names_the_client(gateway):
    gw, url = gateway
    _fresh_buckets(gw)
    with _client(url, PROXY) as c:
        # each client behind the proxy has its own bucket
        for n in range(BURST + 2):
            assert (
                c.get("/v1/models", headers={"X-Forwarded-For": f"192.0.2.{n}"}).status_code == 200
            )
        # the proxy appends the real peer on the right: what the client wrote on the left is not
        # believed, so rotating it does not help
        codes = [
            c.get(
                "/v1/models", headers={"X-Forwarded-For": f"198.51.100.{i}, 192.0.2.200"}
            ).status_code
            for i in range(BURST + 3)
        ]
        assert codes[:BURST] == [200] * BURST and codes[BURST:] == [429] * 3
        # X-Real-IP from the proxy when there is no X-Forwarded-For
        assert c.get("/v1/models", headers={"X-Real-IP": "192.0.2.201"}).status_code == 200
    # a direct client is still keyed on its own address, whatever it writes
    with _client(url, "127.0.0.1") as c:
        assert c.get("/v1/models", headers={"X-Forwarded-For": "192.0.2.202"}).status_code == 200


def test_ipv6_client_cannot_rotate_addresses_within_its_64(gateway):
    """The attack: an IPv6 client behind the proxy picks a new address of its /64 (2**64 of
    them) for every request to get a fresh bucket. The per-IP buckets key on the /64."""
    gw, url = gateway
    _fresh_buckets(gw)
    with _client(url, PROXY) as c:
        codes = [
            c.get("/v1/models", headers={"X-Forwarded-For": f"2001:db8:1:2::{i + 1:x}"}).status_code
            for i in range(BURST + 3)
        ]
        assert codes[:BURST] == [200] * BURST and codes[BURST:] == [429] * 3
        # another /64 is another client
        other = c.get("/v1/models", headers={"X-Forwarded-For": "2001:db8:1:3::1"})
        assert other.status_code == 200


def test_client_ip_rules():
    trusted = Limits(trusted_proxies=["10.0.0.0/8", "::1"]).trusted_proxies
    xff = {"x-forwarded-for": "1.1.1.1, 2.2.2.2, 10.0.0.5"}
    assert client_ip(xff, "9.9.9.9", trusted) == "9.9.9.9"  # untrusted peer
    assert client_ip(xff, "10.1.1.1", trusted) == "2.2.2.2"  # rightmost untrusted hop
    assert client_ip(xff, "::1", trusted) == "2.2.2.2"
    assert client_ip({"x-forwarded-for": "10.0.0.7, 10.0.0.6"}, "10.0.0.1", trusted) == "10.0.0.7"
    assert client_ip({"x-forwarded-for": "1.1.1.1, junk"}, "10.0.0.1", trusted) == "10.0.0.1"
    assert client_ip({"x-forwarded-for": "[2001:db8::1]:443"}, "10.0.0.1", trusted) == "2001:db8::1"
    assert client_ip({"x-forwarded-for": "1.2.3.4:5678"}, "10.0.0.1", trusted) == "1.2.3.4"
    assert client_ip({"x-real-ip": "5.5.5.5"}, "10.0.0.1", trusted) == "5.5.5.5"
    assert client_ip({"x-real-ip": "nonsense"}, "10.0.0.1", trusted) == "10.0.0.1"
    assert client_ip({}, "::ffff:10.0.0.1", trusted) == "10.0.0.1"  # mapped peer unmapped
    assert client_ip({}, None, trusted) == "unknown"
    with pytest.raises(ValueError, match="not an IP address"):
        Limits(trusted_proxies=["10.0.0.0/33"])
    with pytest.raises(ValueError):
        ProviderSettings(_env_file=None, trusted_proxies="10.0.0.1, proxy.lan")
    assert ProviderSettings(_env_file=None).trusted_proxies == []


def test_per_user_429_names_the_limit_hit():
    user = "0x" + "ab" * 20
    lim = Limits(per_user_rpm=30, per_user_burst=5, max_per_user_concurrent=5)
    for _ in range(5):
        lim.enter_user(user), lim.leave_user(user)
    with pytest.raises(Exception) as info:
        lim.enter_user(user)
    assert info.value.status_code == 429
    assert info.value.message == (
        "Rate limit exceeded. Please slow down your request rate "
        "(limit: burst of 5 requests, refilled at 30 requests/min)."
    )
    # when the per-minute count is what ran out, the message names it
    lim = Limits(per_user_rpm=3, per_user_burst=3)
    for _ in range(3):
        lim.enter_user(user), lim.leave_user(user)
    with pytest.raises(Exception) as info:
        lim.enter_user(user)
    assert "(limit: 3 requests/min)." in info.value.message
    # the concurrent cap names itself
    lim = Limits(per_user_rpm=600, per_user_burst=50, max_per_user_concurrent=2)
    lim.enter_user(user), lim.enter_user(user)
    with pytest.raises(Exception) as info:
        lim.enter_user(user)
    assert "You have 2 active requests (limit: 2)" in info.value.message


def _chat_backend() -> FastAPI:
    app = FastAPI()

    @app.post("/chat/completions")
    async def chat(body: dict) -> dict:
        return {
            "id": "chatcmpl-x",
            "object": "chat.completion",
            "created": 1,
            "model": body.get("model"),
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "ok"},
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }

    return app


def test_burst_429_through_serve_names_the_burst(devnet, tmp_path):
    """Six quick requests through ``serve`` to a gateway with the B6 defaults (30/min, burst 5):
    the 429 the user sees says the burst ran out."""
    backend_port = free_port()
    with (
        UvicornThread(_chat_backend(), backend_port) as backend,
        provider_stack(
            devnet, tmp_path / "stack", model="tiny", chat_backend_url=backend.url
        ) as st,
    ):
        user = funded_user_broker(devnet, ledger=10)
        settings = ServeSettings(
            provider=st.provider_address, funding_interval=600, extra_routes=True
        )  # chat to the stack's chat backend
        port = free_port()
        try:
            with UvicornThread(create_serve_app(user, settings), port, start_polls=1000) as serve:
                client = openai.OpenAI(base_url=serve.url + "/v1", api_key="x", max_retries=0)
                messages = [{"role": "user", "content": "hi"}]
                for _ in range(5):
                    client.chat.completions.create(model="tiny", messages=messages)
                with pytest.raises(openai.RateLimitError) as info:
                    client.chat.completions.create(model="tiny", messages=messages)
        finally:
            user.inference.close()
    message = info.value.body["message"]
    assert "burst of 5 requests" in message and "limit: 30 requests/min)" not in message
