"""Fixtures of the auto-funding tests: a real loopback FastAPI server playing a provider's
``GET /v1/user/{address}/unsettledfee`` (settable fee per user, failure modes, optional delay), a
service registered on the session devnet at its URL, and a funded user with an InferenceBroker."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import pytest
import uvicorn
from devnet_helpers import funded_user_broker, register_chatbot_service
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from broker.ports import free_port
from broker.wire.session_token import parse_authorization

OG = 10**18
TEE_ADDR = "0x325744be57db298C2652c672B32Eb12875d92D83"


@dataclass
class FeeServer:
    """State of the fake provider. ``fees[user]`` neuron; ``status`` forces an HTTP status;
    ``delay`` seconds before answering; ``hits[user]`` counts requests."""

    url: str = ""
    fees: dict[str, int] = field(default_factory=dict)
    status: dict[str, int] = field(default_factory=dict)
    delay: float = 0.0
    hits: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _app(state: FeeServer) -> FastAPI:
    app = FastAPI()

    @app.get("/v1/user/{address}/unsettledfee")
    def unsettled(address: str, request: Request):
        with state.lock:
            state.hits[address] = state.hits.get(address, 0) + 1
        if state.delay:
            time.sleep(state.delay)
        forced = state.status.get(address)
        if forced:
            return JSONResponse({"error": "forced"}, status_code=forced)
        token = parse_authorization(request.headers.get("authorization", ""), require_bearer=True)
        if token.token.address.lower() != address.lower():
            return JSONResponse({"error": "you can only query your own unsettled fee"}, 403)
        return {"userAddress": address, "unsettledFee": str(state.fees.get(address, 0))}

    return app


@pytest.fixture(scope="module")
def fee_server():
    """A uvicorn server on 127.0.0.1 for the module; yields its :class:`FeeServer`."""
    state = FeeServer()
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(_app(state), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(250):
        if server.started:
            break
        time.sleep(0.02)
    state.url = f"http://127.0.0.1:{port}"
    yield state
    server.should_exit = True
    thread.join(5)


@pytest.fixture(scope="module")
def funding_provider(devnet, fee_server):
    """A chatbot service registered at the fake server's URL; returns the provider address."""
    provider = register_chatbot_service(
        devnet,
        fee_server.url,
        model="m",
        input_price=10**9,
        output_price=2 * 10**9,
        tee_address=TEE_ADDR,
    )
    return provider.address


@pytest.fixture()
def make_user(devnet, funding_provider, tmp_path):
    """``make_user(ledger="20", sub_account="5", **broker_kwargs) -> InferenceBroker`` for a new
    funded user (its own SQLite fee store); closes them all at the end."""
    from broker.funding import RetryPolicy
    from broker.inference.broker import InferenceBroker
    from broker.inference.fee_store import FeeStore

    made = []

    def make(ledger: str = "20", sub_account: str | None = "5", **kwargs) -> InferenceBroker:
        base = funded_user_broker(devnet, ledger=ledger, amount_neuron=100 * OG)
        if sub_account:
            base.ledger.transfer_fund(funding_provider, "inference", sub_account)
        inf = InferenceBroker.from_broker(
            base, fee_store=FeeStore(f"sqlite:///{tmp_path / f'{base.address}.db'}"), **kwargs
        )
        inf.funding_checker.retry = RetryPolicy(attempts=3, backoff_s=0.05)
        made.append(inf)
        return inf

    yield make
    for inf in made:
        inf.close()
