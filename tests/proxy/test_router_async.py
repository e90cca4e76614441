"""The 0G Router's async image flow through ``serve`` as seed 001 shows it, on a real devnet stack
(tiny Z-Image worker + gateway): the 202 carries ``provider_address``; polls (paced by
``Retry-After``) carry ``createdAt``; the completed poll carries ``data.data[]`` and ``x_0g_trace``
with the billed cost in 0G and, for ``verify_tee: true``, ``tee_verified`` with its reason; the
answer is the same after a ``serve`` restart. The extension fields ``provider`` and ``verify_tee``
never reach the provider (a recording provider registered on the devnet shows what it received)."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from proxy_helpers import ThreadServer, register_image_service

from broker.proxy import ServeSettings, create_app
from broker.units import format_0g

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

API_KEY = "sk-local-router"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _serve(broker, provider: str, **kw) -> ThreadServer:
    settings = ServeSettings(provider=provider, api_key=API_KEY, auto_funding=False, **kw)
    return ThreadServer(create_app(broker, settings))


def _poll(url: str, job_id: str, provider: str) -> httpx.Response:
    deadline = time.monotonic() + 240
    while True:
        r = httpx.get(
            f"{url}/v1/async/jobs/{job_id}",
            params={"provider_address": provider},
            headers=AUTH,
            timeout=60,
        )
        assert r.status_code == 200, r.text
        body = r.json()
        assert ISO.match(body["createdAt"]), body["createdAt"]
        if body["status"] in ("completed", "failed"):
            return r
        assert "x_0g_trace" not in body
        assert time.monotonic() < deadline
        time.sleep(min(float(r.headers.get("Retry-After", "1")), 2.0) / 4)


def test_router_async_flow_as_seed_001(stack, user_broker):
    st, _ = stack
    price = st.service.output_price
    submitted_at = time.time()
    with _serve(user_broker, st.provider_address) as url:
        r = httpx.post(
            url + "/v1/async/images/generations",
            headers=AUTH,
            timeout=60,
            json={
                "model": "z-image",
                "prompt": "A serene mountain landscape at sunset",
                "n": 1,
                "size": "32x32",
                "response_format": "b64_json",
                "num_inference_steps": 1,
                "provider": {"order": [st.provider_address]},
                "verify_tee": True,
            },
        )
        assert r.status_code == 202, r.text
        sub = r.json()
        assert sub["status"] == "pending" and sub["jobId"]
        assert sub["provider_address"] == st.provider_address
        assert r.headers["Retry-After"] and r.headers["X-0G-Verified"] == "true"
        request_id = r.headers["ZG-Res-Key"]
        done = _poll(url, sub["jobId"], sub["provider_address"])
        body = done.json()
        assert body["status"] == "completed"
        assert body["data"]["data"][0]["b64_json"]
        created = datetime.strptime(body["createdAt"], "%Y-%m-%dT%H:%M:%S.%fZ")
        assert abs(created.replace(tzinfo=UTC).timestamp() - submitted_at) < 30
        trace = body["x_0g_trace"]
        assert trace == {
            "request_id": request_id,
            "provider": st.provider_address,
            "billing": {
                "input_cost": "0",
                "output_cost": format_0g(price),
                "total_cost": format_0g(price),
            },
        }
        assert int(done.headers["X-0G-Fee"]) == price  # billed on this poll, as traced
        assert body["tee_verified"] is True
        assert body["tee_verification"]["reason"] == "verified"
        assert "submission" in body["tee_verification"]["detail"]  # what was actually checked
    # a restarted serve answers the same poll the same way (state kept in serve's database)
    with _serve(user_broker, st.provider_address) as url:
        again = httpx.get(f"{url}/v1/async/jobs/{sub['jobId']}", headers=AUTH, timeout=60)
    assert again.status_code == 200
    assert {k: again.json()[k] for k in ("createdAt", "x_0g_trace", "tee_verified")} == {
        k: body[k] for k in ("createdAt", "x_0g_trace", "tee_verified")
    }
    assert again.headers["X-0G-Fee"] == "0"  # billed once only


def test_no_tee_fields_without_verify_tee(stack, user_broker):
    st, _ = stack
    with _serve(user_broker, st.provider_address, verify="off") as url:
        r = httpx.post(
            url + "/v1/async/images/generations",
            headers=AUTH,
            timeout=60,
            json={
                "prompt": "a fox",
                "size": "32x32",
                "num_inference_steps": 1,
                "response_format": "b64_json",
            },
        )
        assert r.status_code == 202 and r.json()["provider_address"] == st.provider_address
        body = _poll(url, r.json()["jobId"], st.provider_address).json()
        elsewhere = httpx.get(
            f"{url}/v1/async/jobs/{r.json()['jobId']}",
            headers=AUTH,
            params={"provider_address": "0x" + "ab" * 20},
            timeout=60,
        )
    assert body["status"] == "completed" and "x_0g_trace" in body
    assert "tee_verified" not in body and "tee_verification" not in body
    assert elsewhere.status_code == 404  # jobs are pinned to their provider
    assert elsewhere.json()["error"]["code"] == "job_not_found"
    assert st.provider_address in elsewhere.json()["error"]["message"]


def test_z_image_fields_on_the_openai_route(stack, user_broker):
    """Fields OpenAI has no equivalent for (seed, negative_prompt, output_format,
    num_inference_steps, guidance_scale) pass through ``/v1/images/generations``."""
    import base64
    import io

    from PIL import Image

    st, _ = stack
    body = {
        "prompt": "a fox",
        "size": "48x32",
        "response_format": "b64_json",
        "seed": 7,
        "negative_prompt": "blurry",
        "output_format": "jpeg",
        "num_inference_steps": 2,
        "guidance_scale": 1.5,
    }
    with _serve(user_broker, st.provider_address) as url:
        first, second, other = (
            httpx.post(url + "/v1/images/generations", headers=AUTH, timeout=300, json=b)
            for b in (body, body, {**body, "seed": 8})
        )
    images = []
    for r in (first, second, other):
        assert r.status_code == 200, r.text
        images.append(base64.b64decode(r.json()["data"][0]["b64_json"]))
    with Image.open(io.BytesIO(images[0])) as image:
        assert image.format == "JPEG" and image.size == (48, 32)
    assert images[0] == images[1] and images[0] != images[2]  # the seed reached the model


def _recording_provider(received: list[dict]) -> FastAPI:
    """A provider backend that records the JSON bodies it receives and answers as our gateway."""
    app = FastAPI()

    @app.post("/v1/async/images/generations")
    async def submit(request: Request):
        received.append(json.loads(await request.body()))
        return JSONResponse(
            {"id": "job-rec", "jobId": "job-rec", "status": "pending", "created": 1777023897},
            status_code=202,
        )

    @app.post("/v1/proxy/images/generations")
    async def sync(request: Request):
        received.append(json.loads(await request.body()))
        return {"created": 1, "data": [{"b64_json": "aGk="}]}

    return app


def test_extension_fields_not_forwarded(devnet, user_broker):
    received: list[dict] = []
    with ThreadServer(_recording_provider(received)) as provider_url:
        provider = register_image_service(devnet, provider_url)
        ext = {"provider": {"order": [provider.address]}, "verify_tee": True}
        with _serve(user_broker, provider.address) as url:
            sub = httpx.post(
                url + "/v1/async/images/generations",
                headers=AUTH,
                timeout=60,
                json={"prompt": "a fox", **ext},
            )
            sync = httpx.post(
                url + "/v1/images/generations",
                headers=AUTH,
                timeout=60,
                json={"prompt": "a fox", "model": "z-image", **ext},
            )
            poll_missing = httpx.get(url + "/v1/async/jobs/job-rec", headers=AUTH, timeout=60)
    assert sub.status_code == 202 and sub.json()["provider_address"] == provider.address
    assert sync.status_code == 200, sync.text
    assert len(received) == 2
    for body in received:
        assert body["prompt"] == "a fox" and body["model"] == "z-image"
        assert "provider" not in body and "verify_tee" not in body
    assert poll_missing.status_code == 404  # this provider has no poll route


def test_unusable_state_database_fails_at_start(stack, user_broker, tmp_path):
    """A state database that cannot be opened stops serve at start-up with one clear line (no
    transaction sent, no half-working server); the URL's password is not shown."""
    from fastapi.testclient import TestClient

    from broker.proxy.errors import ProxyConfigError

    st, _ = stack
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    nonce = user_broker.sender.w3.eth.get_transaction_count(user_broker.address)
    for url, shown in [
        (f"sqlite:///{blocker}/serve.db", str(blocker)),
        ("postgresql://u:hunter2@127.0.0.1:1/db", "u:***@127.0.0.1:1"),
    ]:
        app = create_app(user_broker, ServeSettings(provider=st.provider_address, state_url=url))
        with pytest.raises(ProxyConfigError) as info, TestClient(app):
            pass
        assert shown in str(info.value) and "hunter2" not in str(info.value)
        assert "ZG_SERVE_STATE_URL" in str(info.value)
    assert user_broker.sender.w3.eth.get_transaction_count(user_broker.address) == nonce
