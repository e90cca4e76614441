"""The Pixazo-compatible endpoint of ``serve``, driven with plain ``httpx`` exactly as seed 004's
examples do (only the host changes), on a real devnet stack (tiny Z-Image worker + gateway):
submit, poll to ``COMPLETED``, download ``media_url``, receive the webhook; per-image billing on
both sides; errors in Pixazo's shape (401, 400 fields, 400 ``Model not found``, 402 ``Insufficient
Balance``, 404); ``ERROR`` (the provider lost the job) is never charged; a requested safety check
that did not run is said so."""

from __future__ import annotations

import io
import threading
import time

import httpx
import pytest
from devnet_helpers import register_chatbot_service
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from PIL import Image
from proxy_helpers import ThreadServer, register_image_service

from broker.proxy import ServeSettings, create_app

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

KEY = "sk-local-pixazo"
HEADERS = {
    "Content-Type": "application/json",
    "Cache-Control": "no-cache",
    "Ocp-Apim-Subscription-Key": KEY,
}
TURBO = "/z-image-turbo-834/v1/z-image-turbo-request"
BASE = "/z-image-base/v1/z-image-base-request"
#: seed 004's Turbo example request, verbatim
TURBO_EXAMPLE = {
    "prompt": "A hyper-realistic close-up of an Omo Valley tribal elder, adorned with white chalk "
    "patterns and a headdress of dried flowers, seed pods, and bottle caps. Razor-sharp "
    "skin texture with every pore and wrinkle visible. A warm firelight glows in the "
    "elder's soulful eyes against a blurred, smoky hut interior, captured in a Leica M6 "
    "/ Kodak Portra 400 film aesthetic.",
    "image_size": "landscape_4_3",
    "num_inference_steps": 8,
    "num_images": 1,
    "enable_safety_checker": True,
    "output_format": "png",
    "acceleration": "none",
}


@pytest.fixture(scope="module")
def hooks():
    """A webhook receiver on loopback: yields ``(url, received bodies)``."""
    received: list[dict] = []
    app = FastAPI()

    @app.post("/webhook/callback")
    async def callback(request: Request):
        received.append(await request.json())
        return {"ok": True}

    with ThreadServer(app) as url:
        yield url + "/webhook/callback", received


@pytest.fixture(scope="module")
def gate(stack):
    """Holds the stack's worker on prompts containing ``gated`` until set."""
    st, _ = stack
    engine = st.worker_app.state.image_service.engine
    real, event = engine._generate, threading.Event()

    def generate(pipes, task):
        if "gated" in task.prompt:
            event.wait(120)
        return real(pipes, task)

    engine._generate = generate
    yield event
    event.set()
    engine._generate = real


@pytest.fixture(scope="module")
def serve(stack, user_broker):
    st, _ = stack
    settings = ServeSettings(
        provider=st.provider_address,
        api_key=KEY,
        auto_funding=False,
        pixazo_long_side=128,
        webhook_allow_private=True,
    )
    with ThreadServer(create_app(user_broker, settings)) as url:
        yield url


def _fees(stack, broker) -> tuple[int, int]:
    st, _ = stack
    local = broker.inference.fee_store.get_totals(broker.address, st.provider_address).total_fee
    return local, st.gateway.ledger.unsettled_fee(broker.address)


def _poll(polling_url: str, final=("COMPLETED", "FAILED", "ERROR")) -> list[dict]:
    seen, deadline = [], time.monotonic() + 240
    while True:
        r = httpx.get(polling_url, headers={"Ocp-Apim-Subscription-Key": KEY}, timeout=60)
        assert r.status_code == 200, r.text
        seen.append(r.json())
        if r.json()["status"] in final:
            return seen
        assert time.monotonic() < deadline
        time.sleep(0.2)


def _is_pixazo_error(r: httpx.Response, status: int, error: str) -> str:
    assert r.status_code == status, r.text
    assert set(r.json()) == {"error", "message"}, r.json()
    assert r.json()["error"] == error
    return r.json()["message"]


def test_turbo_example_end_to_end(serve, stack, user_broker, hooks):
    hook_url, received = hooks
    price = stack[0].service.output_price
    before = _fees(stack, user_broker)
    r = httpx.post(
        serve + TURBO,
        headers={**HEADERS, "X-Webhook-URL": hook_url},
        json=TURBO_EXAMPLE,
        timeout=60,
    )
    assert r.status_code == 202, r.text
    sub = r.json()
    assert set(sub) == {"request_id", "status", "polling_url"}
    assert sub["status"] == "QUEUED" and sub["request_id"].startswith("z-image-turbo-834_")
    assert sub["polling_url"] == f"{serve}/v2/requests/status/{sub['request_id']}"
    assert _fees(stack, user_broker) == before  # nothing billed yet
    seen = _poll(sub["polling_url"])
    assert {s["status"] for s in seen} <= {"QUEUED", "PROCESSING", "COMPLETED"}
    done = seen[-1]
    assert done["status"] == "COMPLETED" and done["error"] is None
    assert done["model_id"] == "z-image-turbo-834" and done["request_id"] == sub["request_id"]
    assert done["created_at"] <= done["updated_at"] == done["completed_at"]
    assert done["output"]["media_type"] == "image/png" and len(done["output"]["media_url"]) == 1
    if "has_nsfw_concepts" in done["output"]:
        assert done["safety_checker"] == {"requested": True, "ran": True}
    else:  # never pretend a check ran
        assert done["safety_checker"]["ran"] is False
        assert "no safety check ran" in done["safety_checker"]["detail"]
    media = httpx.get(
        done["output"]["media_url"][0], headers={"Ocp-Apim-Subscription-Key": KEY}, timeout=60
    )
    assert media.status_code == 200 and media.headers["content-type"] == "image/png"
    with Image.open(io.BytesIO(media.content)) as image:
        assert image.format == "PNG" and image.size == (128, 96)  # landscape_4_3 at 128 px
    assert httpx.get(done["output"]["media_url"][0], timeout=60).status_code == 401
    after = _fees(stack, user_broker)
    assert (after[0] - before[0], after[1] - before[1]) == (price, price)
    deadline = time.monotonic() + 30
    while not any(b["request_id"] == sub["request_id"] for b in received):
        assert time.monotonic() < deadline, "webhook not received"
        time.sleep(0.1)
    hook = [b for b in received if b["request_id"] == sub["request_id"]]
    assert len(hook) == 1 and hook[0]["status"] == "COMPLETED"
    assert hook[0]["output"] == done["output"]
    again = _poll(sub["polling_url"])[-1]  # final: stable, not rebilled
    assert again == done and _fees(stack, user_broker) == after


def test_base_minimum_and_per_image_billing(serve, stack, user_broker):
    price = stack[0].service.output_price
    before = _fees(stack, user_broker)
    r = httpx.post(
        serve + BASE,
        headers=HEADERS,
        timeout=60,
        json={
            "prompt": "Grandmother knitting by a window, an empty chair by her",
            "image_size": "portrait_9_16",
            "num_images": 2,
            "num_inference_steps": 10,
            "output_format": "jpeg",
            "acceleration": "regular",
        },
    )
    assert r.status_code == 202, r.text
    assert r.json()["request_id"].startswith("z-image-base_")
    done = _poll(r.json()["polling_url"])[-1]
    assert done["status"] == "COMPLETED" and done["model_id"] == "z-image-base"
    assert done["output"]["media_type"] == "image/jpeg" and len(done["output"]["media_url"]) == 2
    for url in done["output"]["media_url"]:
        media = httpx.get(url, headers={"Ocp-Apim-Subscription-Key": KEY}, timeout=60)
        with Image.open(io.BytesIO(media.content)) as image:
            assert image.format == "JPEG" and image.size == (64, 128)  # 9:16 at 128 px
    after = _fees(stack, user_broker)
    assert (after[0] - before[0], after[1] - before[1]) == (2 * price, 2 * price)
    # a restarted serve (same wallet, same state database) answers the same, images included
    st, _ = stack
    settings = ServeSettings(provider=st.provider_address, api_key=KEY, auto_funding=False)
    with ThreadServer(create_app(user_broker, settings, run_startup=False)) as url:
        again = httpx.get(f"{url}/v2/requests/status/{done['request_id']}", headers=HEADERS)
        image = httpx.get(
            url + "/v2/media/" + done["output"]["media_url"][0].rsplit("/", 1)[1], headers=HEADERS
        )
    assert again.json() == done and image.status_code == 200
    assert _fees(stack, user_broker) == after


@pytest.mark.parametrize(
    ("path", "body", "needle"),
    [
        (TURBO, {**TURBO_EXAMPLE, "image_size": "huge"}, "image_size"),
        (TURBO, {**TURBO_EXAMPLE, "num_images": 5}, "num_images"),
        (TURBO, {**TURBO_EXAMPLE, "num_inference_steps": 51}, "num_inference_steps"),
        (
            BASE,
            {"prompt": "x", "image_size": "square_1_1", "num_inference_steps": 9},
            "num_inference_steps",
        ),
        (BASE, {"prompt": "x", "image_size": "square_1_1", "guidance_scale": 21}, "guidance_scale"),
        (TURBO, {**TURBO_EXAMPLE, "output_format": "gif"}, "output_format"),
        (BASE, {"image_size": "square_1_1"}, "prompt"),
        # the types a JSON client means, as the shared n rule (broker.wire.n) wants them: a count
        # is an integer (not 2.0, "2" or true), a flag a boolean, a number not a string
        (TURBO, {**TURBO_EXAMPLE, "num_images": 2.0}, "num_images"),
        (TURBO, {**TURBO_EXAMPLE, "num_images": "2"}, "num_images"),
        (TURBO, {**TURBO_EXAMPLE, "num_images": True}, "num_images"),
        (TURBO, {**TURBO_EXAMPLE, "num_inference_steps": True}, "num_inference_steps"),
        (TURBO, {**TURBO_EXAMPLE, "num_inference_steps": 8.0}, "num_inference_steps"),
        (TURBO, {**TURBO_EXAMPLE, "enable_safety_checker": "no"}, "enable_safety_checker"),
        (
            BASE,
            {"prompt": "x", "image_size": "square_1_1", "guidance_scale": "4"},
            "guidance_scale",
        ),
        # a seed the gateway cannot forward exactly (it decodes numbers as float64): refused as
        # a field out of range, not with advice to send it as a string
        (TURBO, {**TURBO_EXAMPLE, "seed": 2**53 + 1}, "seed"),
    ],
)
def test_bad_fields_refused_unbilled(serve, stack, user_broker, path, body, needle):
    before = _fees(stack, user_broker)
    message = _is_pixazo_error(
        httpx.post(serve + path, headers=HEADERS, json=body, timeout=30), 400, "Bad Request"
    )
    assert needle in message
    assert _fees(stack, user_broker) == before


def test_auth_webhook_and_unknown_ids(serve):
    no_key = {k: v for k, v in HEADERS.items() if k != "Ocp-Apim-Subscription-Key"}
    _is_pixazo_error(
        httpx.post(serve + TURBO, headers=no_key, json=TURBO_EXAMPLE), 401, "Unauthorized"
    )
    wrong = {**HEADERS, "Ocp-Apim-Subscription-Key": "nope"}
    _is_pixazo_error(
        httpx.post(serve + TURBO, headers=wrong, json=TURBO_EXAMPLE), 401, "Unauthorized"
    )
    bearer = {"Authorization": f"Bearer {KEY}"}  # serve's usual key header works too
    _is_pixazo_error(
        httpx.get(serve + "/v2/requests/status/z-image-base_nope", headers=bearer), 404, "Not Found"
    )
    for hook in ("http://0.0.0.0:9/hook", "ftp://example.com/hook", "http://[ff02::1]/x"):
        message = _is_pixazo_error(
            httpx.post(
                serve + TURBO, headers={**HEADERS, "X-Webhook-URL": hook}, json=TURBO_EXAMPLE
            ),
            400,
            "Bad Request",
        )
        assert "X-Webhook-URL" in message
    _is_pixazo_error(httpx.get(serve + "/v2/media/unknown.png", headers=bearer), 404, "Not Found")
    _is_pixazo_error(
        httpx.post(serve + TURBO, headers=HEADERS, content=b"{bad"), 400, "Bad Request"
    )
    _is_pixazo_error(httpx.get(serve + TURBO, headers=HEADERS), 405, "Method Not Allowed")


def test_status_of_another_users_request_is_not_found(devnet, stack, serve):
    """Two wallets share serve's state database: one never sees the other's request."""
    from devnet_helpers import devnet_user_broker

    from broker.devnet import fund_new_account

    st, _ = stack
    r = httpx.post(
        serve + TURBO, headers=HEADERS, timeout=60, json={**TURBO_EXAMPLE, "num_inference_steps": 1}
    )
    assert r.status_code == 202, r.text
    request_id = r.json()["request_id"]
    other = devnet_user_broker(devnet, fund_new_account(devnet, amount_neuron=10**18))
    try:
        settings = ServeSettings(provider=st.provider_address, api_key=KEY, auto_funding=False)
        with ThreadServer(create_app(other, settings, run_startup=False)) as url:
            theirs = httpx.get(f"{url}/v2/requests/status/{request_id}", headers=HEADERS)
    finally:
        other.inference.close()
    _is_pixazo_error(theirs, 404, "Not Found")
    _poll(r.json()["polling_url"])  # and the owner still sees it


def test_webhook_delivery_rechecks_the_target():
    """Delivery applies the URL rule again (a loopback receiver is refused unless allowed) and does
    not follow redirects."""
    import asyncio

    from fastapi.responses import RedirectResponse

    from broker.proxy.pixazo.serving import deliver_webhook

    hits: list[str] = []
    app = FastAPI()

    @app.post("/hook")
    async def hook():
        hits.append("hook")
        return {}

    @app.post("/moved")
    async def moved():
        hits.append("moved")
        return RedirectResponse("/hook", status_code=307)

    with ThreadServer(app) as url:
        refused = asyncio.run(deliver_webhook(url + "/hook", {"a": 1}))
        allowed = asyncio.run(deliver_webhook(url + "/hook", {"a": 1}, allow_private=True))
        redirected = asyncio.run(deliver_webhook(url + "/moved", {"a": 1}, allow_private=True))
    assert (refused, allowed, redirected) == (False, True, False)
    assert hits == ["hook", "moved"]


def test_lost_job_is_error_and_never_charged(serve, stack, user_broker, gate):
    st, _ = stack
    gate.clear()
    before = _fees(stack, user_broker)
    r = httpx.post(
        serve + TURBO,
        headers=HEADERS,
        timeout=60,
        json={**TURBO_EXAMPLE, "prompt": "gated lighthouse"},
    )
    assert r.status_code == 202, r.text
    request_id = r.json()["request_id"]
    record = user_broker_record(user_broker, serve, request_id)
    # the worker restarts and forgets the job (as a crashed provider would)
    st.worker_app.state.image_service.jobs.discard(record)
    gate.set()
    done = _poll(r.json()["polling_url"])[-1]
    assert done["status"] == "ERROR" and "not charged" in done["error"]
    assert done["output"] is None
    time.sleep(0.5)
    assert _fees(stack, user_broker) == before


def user_broker_record(broker, serve_url, request_id) -> str:
    """The provider's job id behind a Pixazo request (read from serve's state database)."""
    from broker.proxy.state_store import ServeStateStore

    store = ServeStateStore()
    try:
        record = store.get_pixazo(broker.address, request_id)
    finally:
        store.close()
    assert record is not None and record.job_id
    return record.job_id


def test_model_not_found_for_a_chat_provider(devnet, user_broker):
    provider = register_chatbot_service(
        devnet, "http://127.0.0.1:9", model="chat-m", input_price=1, output_price=1, owner_ack=True
    )
    settings = ServeSettings(provider=provider.address, api_key=KEY, auto_funding=False)
    with ThreadServer(create_app(user_broker, settings, run_startup=False)) as url:
        r = httpx.post(
            url + BASE, headers=HEADERS, json={"prompt": "x", "image_size": "square_1_1"}
        )
    message = _is_pixazo_error(r, 400, "Model not found")
    assert message == "Model 'z-image-base' not found or is disabled"


def _refusing_provider() -> FastAPI:
    """A provider answering submissions as the gateway does when it refuses: 400 ``insufficient
    balance`` (B4.5) for prompts containing ``poor``, else 429 with ``Retry-After`` (B6)."""
    app = FastAPI()

    @app.post("/v1/async/images/generations")
    async def submit(request: Request):
        body = await request.json()
        if "poor" in body["prompt"]:
            return JSONResponse(
                {"error": "insufficient balance: your locked balance is 0 0G"}, status_code=400
            )
        return JSONResponse(
            {"error": "too many requests"}, status_code=429, headers={"Retry-After": "9"}
        )

    return app


def test_provider_refusals_in_pixazo_shape(devnet, user_broker):
    with ThreadServer(_refusing_provider()) as provider_url:
        provider = register_image_service(devnet, provider_url)
        settings = ServeSettings(provider=provider.address, api_key=KEY, auto_funding=False)
        with ThreadServer(create_app(user_broker, settings)) as url:
            poor = httpx.post(
                url + TURBO,
                headers=HEADERS,
                timeout=60,
                json={**TURBO_EXAMPLE, "prompt": "poor me"},
            )
            busy = httpx.post(url + TURBO, headers=HEADERS, json=TURBO_EXAMPLE, timeout=60)
    assert "insufficient balance" in _is_pixazo_error(poor, 402, "Insufficient Balance")
    _is_pixazo_error(busy, 429, "Too Many Requests")
    assert busy.headers["Retry-After"] == "9"
    fees = user_broker.inference.fee_store.get_totals(user_broker.address, provider.address)
    assert fees.total_fee == 0


def _checked_provider(png_b64: str) -> FastAPI:
    """A provider whose jobs complete at once: ``checked`` prompts as a worker with a safety checker
    answers (one image withheld and flagged, ``safety_checked: true``), others without any check."""
    app = FastAPI()
    jobs: dict[str, dict] = {}

    @app.post("/v1/async/images/generations")
    async def submit(request: Request):
        body = await request.json()
        job_id = f"job{len(jobs)}"
        if "checked" in body["prompt"]:
            result = {
                "created": 1,
                "safety_checked": True,
                "data": [
                    {"b64_json": png_b64, "has_nsfw_concepts": False},
                    {"has_nsfw_concepts": True},
                ],
            }
        else:
            result = {"created": 1, "data": [{"b64_json": png_b64}] * body["n"]}
        jobs[job_id] = {"jobId": job_id, "status": "completed", "created": 1, "data": result}
        return JSONResponse({"jobId": job_id, "status": "pending", "created": 1}, status_code=202)

    @app.get("/v1/async/jobs/{job_id}")
    async def poll(job_id: str):
        return jobs[job_id]

    return app


def test_safety_checker_verdicts_never_pretended(devnet, user_broker):
    import base64

    buf = io.BytesIO()
    Image.new("RGB", (16, 16), "white").save(buf, format="PNG")
    png_b64 = base64.b64encode(buf.getvalue()).decode()
    with ThreadServer(_checked_provider(png_b64)) as provider_url:
        provider = register_image_service(devnet, provider_url, output_price=10**15)
        settings = ServeSettings(provider=provider.address, api_key=KEY, auto_funding=False)
        with ThreadServer(create_app(user_broker, settings)) as url:
            checked = httpx.post(
                url + TURBO,
                headers=HEADERS,
                timeout=60,
                json={**TURBO_EXAMPLE, "prompt": "checked", "num_images": 2},
            )
            plain = httpx.post(
                url + TURBO, headers=HEADERS, timeout=60, json={**TURBO_EXAMPLE, "prompt": "plain"}
            )
            off = httpx.post(
                url + TURBO,
                headers=HEADERS,
                timeout=60,
                json={**TURBO_EXAMPLE, "prompt": "plain", "enable_safety_checker": False},
            )
            done = [_poll(r.json()["polling_url"])[-1] for r in (checked, plain, off)]
    assert [d["status"] for d in done] == ["COMPLETED"] * 3
    assert done[0]["output"]["has_nsfw_concepts"] == [False, True]
    assert len(done[0]["output"]["media_url"]) == 1  # the flagged one withheld
    assert done[0]["safety_checker"] == {"requested": True, "ran": True}
    assert "has_nsfw_concepts" not in done[1]["output"]
    assert done[1]["safety_checker"]["ran"] is False
    assert "safety_checker" not in done[2]  # not asked, none ran
    fees = user_broker.inference.fee_store.get_totals(user_broker.address, provider.address)
    assert fees.total_fee == 4 * 10**15  # 2 + 1 + 1 images
