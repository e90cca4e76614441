"""End to end on anvil with the REAL tiny Z-Image worker behind the gateway
(:func:`broker.stacks.start_provider_stack`), and OUR broker as the user: three paid images,
``process_response`` True, exact settlement; a swapped TEE key makes ``process_response`` False;
async jobs are billed exactly once, on completion.
"""

from __future__ import annotations

import time

import httpx
import pytest
from devnet_helpers import devnet_user_broker, provider_stack, settle_once_recording

from broker.chain.connection import connect
from broker.chain.contracts import InferenceServingContract
from broker.devnet import fund_new_account
from broker.provider.tee import LocalTeeSigner

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ZG = 10**18
PRICE = 10**16  # 0.01 0G per image
IMAGE = {
    "model": "tiny",
    "prompt": "a red cube",
    "n": 1,
    "size": "32x32",
    "num_inference_steps": 1,
    "seed": 7,
}


@pytest.fixture(scope="module")
def stack(devnet, tmp_path_factory):
    with provider_stack(devnet, tmp_path_factory.mktemp("stack"), price_per_image=PRICE) as st:
        yield st


def _user(devnet, account):
    return devnet_user_broker(devnet, account)


def _fund(broker, provider: str, transfer: str = "5") -> None:
    broker.ledger.add_ledger("20")
    broker.inference.acknowledge_provider_signer(provider)  # creates the sub-account (1 0G)
    broker.ledger.transfer_fund(provider, "inference", transfer)


def _generate(stack, broker, body=IMAGE) -> httpx.Response:
    headers = broker.inference.get_request_headers(stack.provider_address)
    return httpx.post(
        stack.gateway_url + "/v1/proxy/images/generations", json=body, headers=headers, timeout=120
    )


def test_stack_is_registered_and_acknowledged(stack):
    svc = stack.service
    assert svc.url == stack.gateway_url and svc.model == "z-image"  # the seeds' name
    assert svc.output_price == PRICE and svc.verifiability == "TeeML"
    assert svc.tee_signer_address == stack.tee_signer_address and svc.tee_signer_acknowledged
    assert httpx.get(stack.worker_url + "/health").json()["status"] == "ok"
    assert httpx.get(stack.gateway_url + "/health").json()["provider"] == stack.provider_address


def test_three_images_verified_and_settled_exactly(stack, devnet, fresh_account):
    broker = _user(devnet, fresh_account)
    provider = stack.provider_address
    _fund(broker, provider)
    w3 = connect(devnet.rpc_url)
    contract = InferenceServingContract(w3, devnet.inference_address)
    sub_before = contract.get_account(fresh_account.address, provider).balance
    ledger_before = broker.ledger.get_ledger().total_balance
    for _ in range(3):
        r = _generate(stack, broker)
        assert r.status_code == 200, r.text
        assert r.json()["data"][0]["b64_json"]  # a real PNG from the worker
        chat_id = r.headers["ZG-Res-Key"]
        assert broker.inference.process_response(provider, chat_id, IMAGE) is True
    gw = stack.gateway
    assert gw.ledger.unsettled_fee(fresh_account.address) == 3 * PRICE
    wallet_before = w3.eth.get_balance(provider)
    report, receipts = settle_once_recording(gw)
    assert report.settled[fresh_account.address] == 3 * PRICE
    assert contract.get_account(fresh_account.address, provider).balance == sub_before - 3 * PRICE
    assert broker.ledger.get_ledger().total_balance == ledger_before - 3 * PRICE
    gas = sum(r["gasUsed"] * r["effectiveGasPrice"] for r in receipts)
    assert receipts and w3.eth.get_balance(provider) == wallet_before + 3 * PRICE - gas
    assert gw.ledger.unsettled_fee(fresh_account.address) == 0


def test_async_job_billed_once_on_completion(stack, devnet, fresh_account):
    broker = _user(devnet, fresh_account)
    provider = stack.provider_address
    _fund(broker, provider)
    gw, url = stack.gateway, stack.gateway_url
    headers = broker.inference.get_request_headers(provider)
    # refused by the worker at acceptance (n > max_n): never charged
    bad = httpx.post(
        url + "/v1/async/images/generations", headers=headers, timeout=60, json={**IMAGE, "n": 99}
    )
    assert bad.status_code == 400
    r = httpx.post(
        url + "/v1/async/images/generations", headers=headers, timeout=60, json={**IMAGE, "n": 2}
    )
    assert r.status_code == 202, r.text
    job_id = r.json()["jobId"]
    assert r.headers["ZG-Res-Key"] and r.headers.get("Retry-After")
    assert gw.ledger.unsettled_fee(fresh_account.address) == 0  # not billed on acceptance
    deadline = time.monotonic() + 120
    while True:
        poll = httpx.get(url + f"/v1/proxy/async/jobs/{job_id}", headers=headers, timeout=30)
        assert poll.status_code == 200, poll.text
        if poll.json()["status"] == "completed":
            break
        assert poll.headers.get("Retry-After")  # passed through
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert len(poll.json()["data"]["data"]) == 2
    for _ in range(3):  # polling again bills nothing
        again = httpx.get(url + f"/v1/async/jobs/{job_id}", headers=headers, timeout=30)
        assert again.json()["status"] == "completed"
    time.sleep(0.5)  # let the watcher finish too
    assert gw.ledger.unsettled_fee(fresh_account.address) == 2 * PRICE
    # someone else's token cannot read the job
    other = fund_new_account(devnet, 100 * ZG)
    ob = _user(devnet, other)
    _fund(ob, provider)
    foreign = httpx.get(
        url + f"/v1/async/jobs/{job_id}",
        timeout=30,
        headers=ob.inference.get_request_headers(provider),
    )
    assert (foreign.status_code, foreign.json()) == (404, {"error": "job not found"})
    report = gw.settler.settle_once()
    assert report.settled[fresh_account.address] == 2 * PRICE


def test_swapped_tee_key_fails_verification(stack, devnet, fresh_account):
    broker = _user(devnet, fresh_account)
    provider = stack.provider_address
    _fund(broker, provider)
    original = stack.gateway.signer
    stack.restart_gateway(signer=LocalTeeSigner(bytes.fromhex("42" * 32)))  # not acknowledged
    try:
        r = _generate(stack, broker)
        assert r.status_code == 200, r.text
        assert broker.inference.process_response(provider, r.headers["ZG-Res-Key"], IMAGE) is False
    finally:
        stack.restart_gateway(signer=original)
    r = _generate(stack, broker)
    assert broker.inference.process_response(provider, r.headers["ZG-Res-Key"], IMAGE) is True
