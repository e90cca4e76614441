"""Async image jobs through ``serve`` on a real devnet stack (tiny Z-Image worker + gateway): billed
locally exactly once, when a poll first reports the job ``completed`` (as the gateway bills it,
provider-gateway.md B9), never for a failed job, and durably across a ``serve`` restart (the job
state lives in the user's fee-store database)."""

from __future__ import annotations

import threading
import time

import httpx
import pytest
from proxy_helpers import ThreadServer

from broker.inference.fee_store import AsyncJobStatus
from broker.proxy import ServeSettings, create_app

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

API_KEY = "sk-local-async"
HEADERS = {"Authorization": f"Bearer {API_KEY}"}
JOB = {"size": "32x32", "num_inference_steps": 1, "seed": 3, "response_format": "b64_json"}


def _broker(devnet, key: str):
    from broker.broker import create_broker

    return create_broker(
        key,
        network="devnet",
        rpc_url=devnet.rpc_url,
        ledger_address=devnet.ledger_address,
        inference_address=devnet.inference_address,
    )


@pytest.fixture(scope="module")
def user_key(devnet, stack) -> str:
    """A fresh funded wallet's key (hex)."""
    from broker.devnet import fund_new_account

    return "0x" + bytes(fund_new_account(devnet, amount_neuron=100 * 10**18).key).hex()


@pytest.fixture(scope="module")
def user_broker(devnet, user_key):
    """This module's user: a broker with a 10 0G ledger."""
    broker = _broker(devnet, user_key)
    broker.ledger.add_ledger(10)
    yield broker
    broker.inference.close()


@pytest.fixture(scope="module")
def worker_control(stack):
    """Makes the stack's real worker fail prompts containing ``explode`` (as a GPU error would,
    at generation time, after the job was accepted) and hold prompts containing ``gated`` until
    ``gate`` is set."""
    st, _ = stack
    engine = st.worker_app.state.image_service.engine
    real = engine._generate
    gate = threading.Event()

    def generate(pipes, task):
        if "explode" in task.prompt:
            raise RuntimeError("CUDA out of memory (simulated)")
        if "gated" in task.prompt:
            gate.wait(120)
        return real(pipes, task)

    engine._generate = generate
    yield gate
    gate.set()
    engine._generate = real


def _serve(broker, stack):
    st, _ = stack
    settings = ServeSettings(provider=st.provider_address, api_key=API_KEY, funding_interval=600)
    return ThreadServer(create_app(broker, settings))


def _totals(broker, stack):
    return broker.inference.fee_store.get_totals(broker.address, stack[0].provider_address)


def _gateway_fee(stack, broker) -> int:
    return stack[0].gateway.ledger.unsettled_fee(broker.address)


def _submit(url: str, prompt: str, n: int) -> str:
    r = httpx.post(
        url + "/v1/async/images/generations",
        headers=HEADERS,
        timeout=60,
        json={**JOB, "prompt": prompt, "n": n},
    )
    assert r.status_code == 202, r.text
    assert r.headers["X-0G-Fee"] == "0"  # nothing billed at submission
    assert r.headers["X-0G-Verified"] == "true"  # the 202 itself is signed
    return r.json()["jobId"]


def _poll_until_done(url: str, job_id: str) -> list[httpx.Response]:
    polls, deadline = [], time.monotonic() + 240
    while True:
        poll = httpx.get(url + f"/v1/async/jobs/{job_id}", headers=HEADERS, timeout=60)
        assert poll.status_code == 200, poll.text
        polls.append(poll)
        if poll.json()["status"] in ("completed", "failed"):
            return polls
        assert poll.headers["X-0G-Fee"] == "0"
        assert time.monotonic() < deadline
        time.sleep(0.1)


def _wait_gateway(stack, broker, expected: int) -> None:
    """The gateway bills from the user's poll or its own watcher; wait until it has."""
    deadline = time.monotonic() + 30
    while _gateway_fee(stack, broker) != expected:
        assert time.monotonic() < deadline, (_gateway_fee(stack, broker), expected)
        time.sleep(0.1)


def test_completed_job_billed_once_after_several_polls(stack, user_broker, worker_control):
    st, _ = stack
    price = st.service.output_price
    before, gw_before = _totals(user_broker, stack), _gateway_fee(stack, user_broker)
    with _serve(user_broker, stack) as url:
        job_id = _submit(url, "a blue square", n=2)
        job = user_broker.inference.fee_store.get_async_job(
            user_broker.address, st.provider_address, job_id
        )
        assert (job.status, job.images) == (AsyncJobStatus.PENDING, 2)
        assert _totals(user_broker, stack) == before
        polls = _poll_until_done(url, job_id)
        assert polls[-1].json()["status"] == "completed"
        assert len(polls[-1].json()["data"]["data"]) == 2
        again = [
            httpx.get(url + f"/v1/async/jobs/{job_id}", headers=HEADERS, timeout=60)
            for _ in range(3)
        ]
    fees = [int(p.headers["X-0G-Fee"]) for p in [*polls, *again]]
    assert fees.count(2 * price) == 1 and sum(fees) == 2 * price  # billed on one poll only
    assert int(polls[-1].headers["X-0G-Fee"]) == 2 * price  # the first "completed"
    # the gateway does not sign job results: nothing to verify on the completed polls
    assert {p.headers["X-0G-Verified"] for p in [polls[-1], *again]} == {"none"}
    after = _totals(user_broker, stack)
    assert after.total_fee - before.total_fee == 2 * price
    assert after.request_count - before.request_count == 1
    _wait_gateway(stack, user_broker, gw_before + 2 * price)  # local == gateway
    job = user_broker.inference.fee_store.get_async_job(
        user_broker.address, st.provider_address, job_id
    )
    assert (job.status, job.fee) == (AsyncJobStatus.BILLED, 2 * price)
    log = user_broker.inference.fee_store.recent_verifications(5, provider=st.provider_address)
    unsigned = [r for r in log if job_id in r.detail]
    assert len(unsigned) == 1 and unsigned[0].verified is None


def test_failed_job_is_never_billed(stack, user_broker, worker_control):
    st, _ = stack
    before, gw_before = _totals(user_broker, stack), _gateway_fee(stack, user_broker)
    with _serve(user_broker, stack) as url:
        job_id = _submit(url, "explode please", n=1)
        polls = _poll_until_done(url, job_id)
        assert polls[-1].json()["status"] == "failed"
        assert "out of memory" in polls[-1].json()["error"]["message"]
        again = httpx.get(url + f"/v1/async/jobs/{job_id}", headers=HEADERS, timeout=60)
        assert again.json()["status"] == "failed"
        unknown = httpx.get(url + "/v1/async/jobs/imgjob_unknown", headers=HEADERS, timeout=60)
        assert unknown.status_code == 404
    assert all(p.headers["X-0G-Fee"] == "0" for p in [*polls, again])
    assert _totals(user_broker, stack) == before
    job = user_broker.inference.fee_store.get_async_job(
        user_broker.address, st.provider_address, job_id
    )
    assert (job.status, job.fee) == (AsyncJobStatus.FAILED, 0)
    time.sleep(0.5)  # the gateway's watcher too
    assert _gateway_fee(stack, user_broker) == gw_before


def test_serve_restart_between_polls_bills_once(
    stack, user_broker, user_key, worker_control, devnet
):
    st, _ = stack
    price = st.service.output_price
    before, gw_before = _totals(user_broker, stack), _gateway_fee(stack, user_broker)
    worker_control.clear()
    with _serve(user_broker, stack) as url:
        job_id = _submit(url, "gated lighthouse", n=1)
        first = httpx.get(url + f"/v1/async/jobs/{job_id}", headers=HEADERS, timeout=60)
        assert first.json()["status"] in ("pending", "running")
        assert first.headers["X-0G-Fee"] == "0"
    # serve restarts as another process would: a new broker (own engine on the same fee-store
    # database) for the same wallet; the job completes while it is coming up
    restarted = _broker(devnet, user_key)
    try:
        assert restarted.inference.fee_store is not user_broker.inference.fee_store
        worker_control.set()
        with _serve(restarted, stack) as url:
            polls = _poll_until_done(url, job_id)
            assert polls[-1].json()["status"] == "completed"
            polls.append(httpx.get(url + f"/v1/async/jobs/{job_id}", headers=HEADERS, timeout=60))
        # and once more after another restart: already billed, nothing added
        with _serve(user_broker, stack) as url:
            last = httpx.get(url + f"/v1/async/jobs/{job_id}", headers=HEADERS, timeout=60)
            assert last.json()["status"] == "completed" and last.headers["X-0G-Fee"] == "0"
    finally:
        restarted.inference.close()
    assert sum(int(p.headers["X-0G-Fee"]) for p in polls) == price
    assert _totals(user_broker, stack).total_fee - before.total_fee == price
    _wait_gateway(stack, user_broker, gw_before + price)
