"""``/v1/account`` and ``/metrics`` answer within ``chain_timeout`` when the chain node hangs (issue
#9 §4: they blocked 152 s), and say which part is down.

Real parts: the session devnet behind a loopback TCP relay that can be switched to swallow requests
(the node "hangs": connections accepted, never answered), a user broker whose RPC URL is the relay,
``serve`` (uvicorn thread) for a chatbot service registered on chain.
"""

from __future__ import annotations

import time

import httpx
import pytest
from devnet_helpers import register_chatbot_service
from hang_relay_helpers import HangingRelay
from proxy_helpers import ThreadServer

from broker.proxy import ServeSettings, create_app

pytestmark = pytest.mark.timeout(120)

ZG = 10**18
TIMEOUT = 1.5


@pytest.fixture()
def relay(devnet):
    r = HangingRelay(devnet.rpc_url)
    yield r
    r.close()


@pytest.fixture()
def serve_via_relay(devnet, relay):
    from broker.broker import create_broker
    from broker.devnet import fund_new_account

    service = register_chatbot_service(
        devnet, "http://127.0.0.1:9", model="m", input_price=1, output_price=1
    )
    user = fund_new_account(devnet, amount_neuron=20 * ZG)
    broker = create_broker(
        "0x" + bytes(user.key).hex(),
        network="devnet",
        rpc_url=relay.url,
        ledger_address=devnet.ledger_address,
        inference_address=devnet.inference_address,
    )
    broker.ledger.add_ledger(5)
    broker.ledger.transfer_fund(service.address, "inference", 1)
    settings = ServeSettings(provider=service.address, chain_timeout=TIMEOUT, auto_funding=False)
    with ThreadServer(create_app(broker, settings, run_startup=False)) as url:
        yield url
    broker.inference.close()


def _timed_get(url: str) -> tuple[float, httpx.Response]:
    start = time.monotonic()
    r = httpx.get(url, timeout=20)
    return time.monotonic() - start, r


def test_account_and_metrics_answer_promptly_when_the_node_hangs(serve_via_relay, relay):
    url = serve_via_relay
    took, r = _timed_get(url + "/v1/account")
    body = r.json()
    assert r.status_code == 200 and body["chain"] == {"ok": True, "error": None, "unavailable": []}
    assert body["ledger"]["total_balance"] == str(5 * ZG)  # transfers stay in total
    assert body["sub_account"]["balance"] == str(ZG)

    relay.hang.set()
    for _ in range(2):  # the second request waits on the same hung reads
        took, r = _timed_get(url + "/v1/account")
        assert took < TIMEOUT + 2, f"/v1/account took {took:.1f} s with a hung node"
        body = r.json()
        assert r.status_code == 200 and body["chain"]["ok"] is False
        assert sorted(body["chain"]["unavailable"]) == ["ledger", "sub_account"]
        assert f"chain node did not answer within {TIMEOUT:g} s" in body["chain"]["error"]
        assert body["ledger"] is None and body["sub_account"] is None
        assert body["fees"]["request_count"] == 0  # local parts still answered
    took, r = _timed_get(url + "/metrics")
    assert took < TIMEOUT + 2 and r.status_code == 200
    assert "sub_account" in r.text  # last known gauges still rendered

    relay.release()
    deadline = time.monotonic() + 15
    while True:
        took, r = _timed_get(url + "/v1/account")
        if r.json()["chain"]["ok"]:
            break
        assert time.monotonic() < deadline, r.json()["chain"]
        time.sleep(0.3)
    assert r.json()["sub_account"]["balance"] == str(ZG)
