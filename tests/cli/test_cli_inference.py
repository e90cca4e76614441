"""Inference CLI commands on the devnet with a registered, owner-acknowledged provider whose URL is
a loopback HTTP server (``/v1/models``): list-providers, acknowledge-provider, get-secret,
revoke-token, revoke-all-tokens, get-models, verify wiring."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from devnet_helpers import register_chatbot_service
from eth_account import Account
from web3 import Web3

from broker.chain.contracts import InferenceServingContract
from broker.wire.session_token import parse_authorization, verify_session_token

pytestmark = pytest.mark.timeout(120)

OG = 10**18
TEE_ADDR = "0x325744be57db298C2652c672B32Eb12875d92D83"
MODELS = {"object": "list", "data": [{"id": "m-1", "pricing": {"input": "1", "output": "2"}}]}


@pytest.fixture(scope="module")
def models_server():
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = (200, MODELS) if self.path == "/v1/models" else (404, {"error": "no"})
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def cli_provider(devnet, models_server):
    """A chatbot service at the loopback URL, acknowledged by the contract owner."""
    provider = register_chatbot_service(
        devnet,
        models_server,
        model="m-1",
        input_price=10**9,
        output_price=3 * 10**9,
        tee_address=TEE_ADDR,
        owner_ack=True,
    )
    return provider.address


def _account(devnet, user: str, provider: str):
    w3 = Web3(Web3.HTTPProvider(devnet.rpc_url))
    return InferenceServingContract(w3, devnet.inference_address).get_account(user, provider)


def test_inference_commands(cli, key_env, fresh_account, devnet, cli_provider):
    user, provider = fresh_account.address, cli_provider
    run = lambda *a: cli("--network", "devnet", *a, env=key_env)

    r = run("list-providers", "--json")
    assert r.exit_code == 0, r.stderr
    listed = {s["provider"]: s for s in json.loads(r.stdout)}
    assert listed[provider]["tee_signer_acknowledged"] is True
    assert (
        listed[provider]["model"],
        listed[provider]["output_price"],
        listed[provider]["output_price_0g"],
    ) == ("m-1", str(3 * 10**9), "0.000000003")
    r = run("list-providers")
    assert r.exit_code == 0 and provider in r.stdout and "Output Price Per Token" in r.stdout
    for group in ("inference", "inf"):  # 0g-compute-cli's names: `inference list-providers`
        r = run(group, "list-providers", "--json")
        assert r.exit_code == 0, r.stderr
        assert provider in {s["provider"] for s in json.loads(r.stdout)}

    r = run("get-secret", "--provider", provider)
    assert r.exit_code == 1 and "no sub-account" in r.stderr  # nothing created silently

    assert run("add-account", "--amount", "10").exit_code == 0
    r = run("acknowledge-provider", "--provider", provider)
    assert r.exit_code == 0, r.stderr
    assert "created the sub-account with 1 0G" in r.stderr
    account = _account(devnet, user, provider)
    assert account.acknowledged and account.balance == OG

    r = run("get-secret", "--provider", provider, "--token-id", "3", "--duration", "60000")
    assert r.exit_code == 0, r.stderr
    header = next(line for line in r.stdout.splitlines() if line.startswith("Authorization: "))
    header = header.removeprefix("Authorization: ")
    assert header.startswith("Bearer app-sk-") and "Token ID: 3" in r.stdout
    parsed = verify_session_token(
        header, provider_address=provider, account_generation=account.generation
    )
    assert parsed.token.token_id == 3 and parsed.token.address == user
    assert parsed.token.expires_at - parsed.token.timestamp == 60_000
    r = run("get-secret", "--provider", provider, "--json")
    key = json.loads(r.stdout)
    assert key["token_id"] == 0 and key["expires_at"] == 0
    assert parse_authorization(key["authorization"]).token.token_id == 0
    r = run("get-secret", "--provider", provider, "--token-id", "255")
    assert r.exit_code == 2  # usage error: out of range

    r = run("revoke-token", "--provider", provider, "--token-id", "3")
    assert r.exit_code == 0, r.stderr
    assert r.stdout.strip().startswith("0x")
    account = _account(devnet, user, provider)
    assert (account.revoked_bitmap >> 3) & 1 == 1 and account.revoked_bitmap & 1 == 0

    gen = account.generation
    r = run("--json", "revoke-all-tokens", "--provider", provider)
    assert r.exit_code == 0 and json.loads(r.stdout)["transaction"]["tx_hash"].startswith("0x")
    account = _account(devnet, user, provider)
    assert account.generation == gen + 1 and account.revoked_bitmap == 0

    r = run("get-models", "--provider", provider, "--json")
    assert r.exit_code == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["default_model"] == "m-1" and [m["id"] for m in data["models"]] == ["m-1"]
    r = run("get-models", "--provider", provider)
    assert r.exit_code == 0 and "Default model: m-1" in r.stdout


def test_verify_command_reaches_the_provider(cli, key_env, cli_provider, models_server):
    # the service lookup works on the devnet: verification fails only at the quote download
    r = cli("--network", "devnet", "verify", "--provider", cli_provider, env=key_env)
    assert r.exit_code == 1
    assert "/v1/quote" in r.stderr or "quote" in r.stderr.lower(), r.stderr
    r = cli("--network", "devnet", "verify", "--provider", Account.create().address, env=key_env)
    assert r.exit_code == 1 and "no service registered" in r.stderr
