"""``0g-broker ui`` (standalone) over real HTTP against the devnet: the actions that move money are
two-step (nothing moves before the confirmation, the exact amount is shown, a confirmation runs
once) and refuse every request not provably from the dashboard's own page (CSRF)."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest
from devnet_helpers import funded_user_broker, key_hex
from relay_helpers import RpcRelay
from server_helpers import UvicornThread, free_port

from broker.ui.actions import SESSION_COOKIE
from broker.ui.standalone import create_ui_app

ZG = 10**18


@pytest.fixture(scope="module")
def standalone(devnet, ui_stack):
    """(url, broker, client with a session cookie, csrf token) for a fresh user with a 5 0G
    ledger."""
    broker = funded_user_broker(devnet, ledger=5, amount_neuron=50 * ZG)
    with (
        UvicornThread(create_ui_app(broker), free_port()) as server,
        httpx.Client(base_url=server.url, timeout=120) as client,
    ):
        page = client.get("/ui/")
        assert page.status_code == 200 and SESSION_COOKIE in page.headers["set-cookie"]
        assert "httponly" in page.headers["set-cookie"].lower()
        assert "samesite=strict" in page.headers["set-cookie"].lower()
        token = client.get("/ui/api/config").json()["csrf_token"]
        assert token
        yield server.url, broker, client, token
    broker.inference.close()


def _post(client, url, path, token, json=None, **headers):
    base = {"Origin": url, "X-CSRF-Token": token, "Content-Type": "application/json"}
    base.update(headers)
    return client.post(
        path,
        content=httpx.Request("POST", "/", json=json or {}).content,
        headers={k: v for k, v in base.items() if v is not None},
    )


def test_deposit_two_steps_moves_exactly_once(standalone):
    url, broker, client, token = standalone
    before = broker.ledger.get_ledger().total_balance
    prep = _post(client, url, "/ui/api/actions", token, {"action": "deposit", "amount": "0.25"})
    assert prep.status_code == 200, prep.text
    pending = prep.json()
    assert pending["amount"] == str(ZG // 4) and pending["amount_0g"] == "0.25"
    assert "0.25 0G" in pending["summary"]
    assert broker.ledger.get_ledger().total_balance == before  # nothing moved yet
    done = _post(client, url, f"/ui/api/actions/{pending['id']}/confirm", token)
    assert done.status_code == 200, done.text
    assert done.json()["tx_hash"].startswith("0x") and done.json()["amount_0g"] == "0.25"
    assert broker.ledger.get_ledger().total_balance == before + ZG // 4
    again = _post(client, url, f"/ui/api/actions/{pending['id']}/confirm", token)
    assert again.status_code == 404 and "no such pending action" in again.json()["error"]
    assert broker.ledger.get_ledger().total_balance == before + ZG // 4


def test_transfer_and_refund(standalone, ui_stack):
    url, broker, client, token = standalone
    provider = ui_stack.stack.provider_address
    prep = _post(
        client,
        url,
        "/ui/api/actions",
        token,
        {"action": "transfer", "amount": "1", "provider": provider.lower()},
    ).json()
    assert prep["provider"] == provider and provider in prep["summary"]
    assert _post(client, url, f"/ui/api/actions/{prep['id']}/confirm", token).status_code == 200
    assert broker.ledger.get_sub_account_with_detail(provider).balance == ZG
    available = broker.ledger.get_ledger().available_balance
    prep = _post(client, url, "/ui/api/actions", token, {"action": "refund", "amount": "0.5"})
    assert (
        _post(client, url, f"/ui/api/actions/{prep.json()['id']}/confirm", token).status_code == 200
    )
    assert broker.ledger.get_ledger().available_balance == available - ZG // 2
    account = client.get("/ui/api/account").json()
    assert any(s["provider"] == provider and s["balance"] == str(ZG) for s in account["inference"])


@pytest.mark.parametrize(
    "body, words",
    [
        ({"action": "deposit", "amount": 0.1}, "float"),  # a JSON float: inexact
        ({"action": "deposit", "amount": "-1"}, "amount"),
        ({"action": "deposit", "amount": "1e-19"}, "amount"),
        ({"action": "withdraw-all", "amount": "1"}, "action must be one of"),
        ({"action": "transfer", "amount": "1", "provider": "0x1234"}, "provider"),
        ({"action": "refund", "amount": "1000"}, "available"),  # checked before spending
        ({"action": "deposit", "amount": "100000"}, "wallet holds"),
    ],
)
def test_bad_actions_refused_in_words_and_nothing_moves(standalone, body, words):
    url, broker, client, token = standalone
    before = broker.ledger.get_ledger()
    resp = _post(client, url, "/ui/api/actions", token, body)
    assert resp.status_code == 400 and words in resp.json()["error"], resp.text
    assert broker.ledger.get_ledger() == before


@pytest.mark.parametrize(
    "change, words",
    [
        ({"Origin": "http://evil.example"}, "Origin"),
        ({"Origin": None}, "Origin"),
        ({"Origin": "null"}, "Origin"),
        ({"X-CSRF-Token": None}, "CSRF"),
        ({"X-CSRF-Token": "0" * 64}, "CSRF"),
        ({"Content-Type": "text/plain"}, "application/json"),  # the shared guard: 415
        ({"Content-Type": "application/x-www-form-urlencoded"}, "application/json"),
    ],
)
def test_cross_site_requests_refused(standalone, change, words):
    url, broker, client, token = standalone
    before = broker.ledger.get_ledger()
    prep = _post(client, url, "/ui/api/actions", token, {"action": "deposit", "amount": "0.1"})
    assert prep.status_code == 200
    for path in ("/ui/api/actions", f"/ui/api/actions/{prep.json()['id']}/confirm"):
        resp = _post(client, url, path, token, {"action": "deposit", "amount": "0.1"}, **change)
        wanted = 415 if "Content-Type" in change else 403
        assert resp.status_code == wanted and words in resp.json()["error"], (path, resp.text)
    assert broker.ledger.get_ledger() == before


def test_token_is_bound_to_the_browser_session(standalone):
    url, _broker, _client, token = standalone
    with httpx.Client(base_url=url) as other:  # another browser: its own cookie
        other.get("/ui/")
        resp = _post(other, url, "/ui/api/actions", token, {"action": "deposit", "amount": "0.1"})
        assert resp.status_code == 403 and "CSRF" in resp.json()["error"]
        no_cookie = httpx.post(
            url + "/ui/api/actions",
            json={"action": "deposit", "amount": "1"},
            headers={"Origin": url, "X-CSRF-Token": token},
        )
        assert no_cookie.status_code == 403


def test_dns_rebinding_host_refused(standalone):
    url, _broker, _client, _token = standalone
    resp = httpx.get(url + "/ui/api/account", headers={"Host": "attacker.example:80"})
    assert resp.status_code == 403 and "Host" in resp.json()["error"]


def test_action_body_is_capped(standalone):
    """The attack: a request that passes the CSRF checks (any local program can fetch a session
    cookie and its token) with a body of many megabytes, read whole before it is parsed. The body
    of an action is a few fields: more than 64 KiB is refused with 413 in the dashboard's shape,
    streamed or not."""
    url, broker, client, token = standalone
    before = broker.ledger.get_ledger()
    big = b'{"action": "deposit", "amount": "0.1", "pad": "' + b"x" * (2 << 20) + b'"}'
    headers = {"Origin": url, "X-CSRF-Token": token, "Content-Type": "application/json"}
    for content in (big, iter([big[: 1 << 20], big[1 << 20 :]])):
        r = client.post("/ui/api/actions", content=content, headers=headers)
        assert r.status_code == 413 and "64 KiB" in r.json()["error"], r.text[:200]
    assert broker.ledger.get_ledger() == before


def test_node_gone_is_a_502_in_words_and_nothing_moves(devnet):
    """The attack: the RPC node goes away (or is cut off) while the page is open. Preparing an
    action reads the chain (wallet or ledger balance) and confirming one sends a transaction: both
    must answer the dashboard's ``{"error": ...}`` with 502 naming what failed, never a bare 500,
    and nothing may move."""
    from broker.broker import create_broker

    user = funded_user_broker(devnet, ledger=5, amount_neuron=50 * ZG)
    relay = RpcRelay(devnet.rpc_url)
    broker = create_broker(
        key_hex(user.wallet),
        network="devnet",
        rpc_url=relay.url,
        ledger_address=devnet.ledger_address,
        inference_address=devnet.inference_address,
    )
    try:
        with (
            UvicornThread(create_ui_app(broker), free_port()) as server,
            httpx.Client(base_url=server.url, timeout=120) as client,
        ):
            client.get("/ui/")
            token = client.get("/ui/api/config").json()["csrf_token"]
            ready = _post(
                client, server.url, "/ui/api/actions", token, {"action": "refund", "amount": "1"}
            )
            assert ready.status_code == 200, ready.text
            before = user.ledger.get_ledger()
            relay.stop()
            for body in ({"action": "deposit", "amount": "1"}, {"action": "refund", "amount": "1"}):
                resp = _post(client, server.url, "/ui/api/actions", token, body)
                assert resp.status_code == 502, (body, resp.status_code, resp.text)
                assert "unreachable" in resp.json()["error"], resp.text
            done = _post(client, server.url, f"/ui/api/actions/{ready.json()['id']}/confirm", token)
            assert done.status_code == 502 and "refund failed" in done.json()["error"], done.text
        assert user.ledger.get_ledger() == before
    finally:
        broker.inference.close()
        user.inference.close()


def test_cli_ui_reports_a_busy_port_in_one_line(ui_stack, fresh_account, tmp_path):
    import socket

    from devnet_helpers import key_hex

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {
            "ZG_HOME": str(tmp_path),
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": ":".join(sys.path),
            "ZG_PRIVATE_KEY": key_hex(fresh_account),
        }
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "broker.cli.main",
                "--network",
                "devnet",
                "--rpc",
                ui_stack.devnet.rpc_url,
                "--ledger-ca",
                ui_stack.devnet.ledger_address,
                "--inference-ca",
                ui_stack.devnet.inference_address,
                "ui",
                "--port",
                str(port),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert run.returncode == 1, run.stderr
    assert "did not start" in run.stderr and "Traceback" not in run.stderr
    assert key_hex(fresh_account)[-16:] not in run.stderr + run.stdout
