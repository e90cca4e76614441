"""Image ``url`` answers that a client can reach, end to end on a real devnet stack (tiny Z-Image
worker → gateway → ``serve``): the worker's private link becomes the gateway's
``/v1/proxy/files/<id>`` (only for the user who made the image, expiring), and ``serve`` turns it
into its own ``/v1/files/<id>`` behind its API key. The gateway signs what it sends, so the
response signature still verifies on the rewritten bytes (issue 12)."""

from __future__ import annotations

import io
import time

import httpx
import openai
import pytest
from devnet_helpers import funded_user_broker
from PIL import Image
from proxy_helpers import ThreadServer

from broker.proxy import ServeSettings, create_app

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

API_KEY = "sk-files-test"
ZG = 10**18
IMAGE = {
    "model": "z-image",
    "prompt": "a red cube",
    "n": 1,
    "size": "32x32",
    "num_inference_steps": 1,
    "seed": 5,
    "response_format": "url",
}


@pytest.fixture(scope="module")
def serve(stack, user_broker, tmp_path_factory):
    st, _ = stack
    settings = ServeSettings(
        provider=st.provider_address,
        api_key=API_KEY,
        funding_interval=600,
        media_ttl=3,
        state_url="sqlite:///" + str(tmp_path_factory.mktemp("serve") / "state.db"),
    )
    with ThreadServer(create_app(user_broker, settings)) as url:
        yield url


@pytest.fixture(scope="module")
def user(stack, user_broker):
    """The module's user, with an acknowledged and funded sub-account at the provider."""
    st, _ = stack
    user_broker.inference.acknowledge_provider_signer(st.provider_address)
    user_broker.ledger.transfer_fund(st.provider_address, "inference", "3")
    return user_broker


def _png(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def _gateway_image(st, broker) -> httpx.Response:
    headers = broker.inference.get_request_headers(st.provider_address)
    return httpx.post(
        st.gateway_url + "/v1/proxy/images/generations", json=IMAGE, headers=headers, timeout=300
    )


def test_gateway_answers_its_own_link_for_the_same_user_only(stack, user, devnet):
    user_broker = user
    st, _ = stack
    provider = st.provider_address
    r = _gateway_image(st, user_broker)
    assert r.status_code == 200, r.text
    url = r.json()["data"][0]["url"]
    assert url.startswith(st.gateway_url + "/v1/proxy/files/"), url
    assert st.worker_url not in r.text  # the worker's address never leaks
    # the signature covers the bytes the client received (the rewritten body)
    result = user_broker.inference.process_response_detailed(
        provider, r.headers["ZG-Res-Key"], IMAGE, response_body=r.content
    )
    assert result.verified is True, result
    mine = user_broker.inference.get_request_headers(provider)
    got = httpx.get(url, headers=mine, timeout=60)
    assert got.status_code == 200 and got.headers["content-type"] == "image/png"
    assert _png(got.content).size == (32, 32)
    # no session (refused as any proxied request without one, B3), or another user's: not found
    assert httpx.get(url, timeout=60).status_code in (400, 401)
    other = funded_user_broker(devnet, ledger=10, amount_neuron=100 * ZG)
    try:
        other.inference.acknowledge_provider_signer(provider)
        other.ledger.transfer_fund(provider, "inference", "2")
        theirs = httpx.get(url, headers=other.inference.get_request_headers(provider), timeout=60)
        assert theirs.status_code == 404 and "error" in theirs.json()
    finally:
        other.inference.close()
    # an id that was never handed out
    assert (
        httpx.get(st.gateway_url + "/v1/proxy/files/nope", headers=mine, timeout=60).status_code
        == 404
    )


def test_gateway_link_expires(stack, user):
    user_broker = user
    st, _ = stack
    links = st.gateway.extra["file_links"]
    ttl, links.ttl = links.ttl, 1.0
    try:
        r = _gateway_image(st, user_broker)
    finally:
        links.ttl = ttl
    url = r.json()["data"][0]["url"]
    headers = user_broker.inference.get_request_headers(st.provider_address)
    assert httpx.get(url, headers=headers, timeout=60).status_code == 200
    time.sleep(1.2)
    gone = httpx.get(url, headers=headers, timeout=60)
    assert gone.status_code == 404 and "expired" in gone.json()["error"]


def test_serve_answers_its_own_link_behind_its_api_key(serve, stack):
    st, _ = stack
    client = openai.OpenAI(base_url=f"{serve}/v1", api_key=API_KEY, max_retries=0, timeout=300)
    raw = client.images.with_raw_response.generate(
        model="z-image",
        prompt="a blue cube",
        size="32x32",
        response_format="url",
        extra_body={"num_inference_steps": 1, "seed": 3},
    )
    assert raw.headers["X-0G-Verified"] == "true"  # verified on the gateway's bytes
    url = raw.parse().data[0].url
    assert url.startswith(serve + "/v1/files/") and url.endswith(".png"), url
    assert st.gateway_url not in url and st.worker_url not in url
    auth = {"Authorization": f"Bearer {API_KEY}"}
    got = httpx.get(url, headers=auth, timeout=60)
    assert got.status_code == 200 and got.headers["content-type"] == "image/png"
    assert _png(got.content).size == (32, 32)
    assert httpx.get(url, timeout=60).status_code == 401
    assert httpx.get(url, headers={"Authorization": "Bearer wrong"}, timeout=60).status_code == 401
    missing = httpx.get(serve + "/v1/files/nope.png", headers=auth, timeout=60)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "file_not_found"
    # media_ttl is 3 s here: the link expires
    time.sleep(3.2)
    assert httpx.get(url, headers=auth, timeout=60).status_code == 404


def test_async_job_result_links_point_at_serve(serve, stack):
    st, _ = stack
    auth = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=serve, headers=auth, timeout=300) as c:
        r = c.post("/v1/async/images/generations", json={**IMAGE, "prompt": "a green cube"})
        assert r.status_code == 202, r.text
        job_id = r.json()["jobId"]
        deadline = time.monotonic() + 240
        while (job := c.get(f"/v1/async/jobs/{job_id}")).json()["status"] not in (
            "completed",
            "failed",
        ):
            assert job.status_code == 200 and time.monotonic() < deadline, job.text
            time.sleep(0.3)
        assert job.json()["status"] == "completed", job.text
        url = job.json()["data"]["data"][0]["url"]
        assert url.startswith(serve + "/v1/files/"), url
        assert st.worker_url not in job.text and st.gateway_url not in job.text
        got = c.get(url)
        assert got.status_code == 200 and _png(got.content).size == (32, 32)


def test_b64_answers_are_unchanged(serve):
    r = httpx.post(
        serve + "/v1/images/generations",
        headers={"Authorization": f"Bearer {API_KEY}"},
        json={**IMAGE, "response_format": "b64_json"},
        timeout=300,
    )
    assert r.status_code == 200, r.text
    item = r.json()["data"][0]
    assert item.get("url") is None and _png(__import__("base64").b64decode(item["b64_json"]))
