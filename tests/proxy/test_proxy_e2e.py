"""End to end: ``serve`` on a real devnet (anvil + our contracts), the tiny Z-Image worker and the
provider gateway on loopback, a fake OpenAI-compatible chat/audio backend, and the official
``openai`` client. One stack and one ``serve`` for the module."""

from __future__ import annotations

import base64
import io
import time

import httpx
import openai
import pytest
from PIL import Image
from proxy_helpers import ThreadServer

from broker.provider.tee import LocalTeeSigner
from broker.proxy import ServeSettings, create_app

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

API_KEY = "sk-local-test"


@pytest.fixture(scope="module")
def serve(stack, user_broker):
    st, _ = stack
    settings = ServeSettings(
        provider=st.provider_address, api_key=API_KEY, funding_interval=600, extra_routes=True
    )  # the stack also fronts a chat backend
    with ThreadServer(create_app(user_broker, settings)) as url:
        yield url


@pytest.fixture(scope="module")
def client(serve):
    return openai.OpenAI(base_url=f"{serve}/v1", api_key=API_KEY, max_retries=0, timeout=300)


def _local_fee(user_broker, provider) -> int:
    return user_broker.inference.fee_store.get_totals(user_broker.address, provider).total_fee


def _gateway_fee(stack, user_broker) -> int:
    return stack[0].gateway.ledger.unsettled_fee(user_broker.address)


def test_health_account_and_startup(serve, stack, user_broker):
    st, _ = stack
    health = httpx.get(serve + "/health").json()
    assert health["provider"] == st.provider_address and health["verify"] == "warn"
    assert httpx.get(serve + "/v1/account").status_code == 401  # api key required
    acc = httpx.get(serve + "/v1/account", headers={"Authorization": f"Bearer {API_KEY}"}).json()
    assert acc["sub_account"]["acknowledged"] is True
    # funded at start-up to >= 2 0G (buffer) and auto-funding runs
    assert int(acc["sub_account"]["locked_balance"]) >= 2 * 10**18
    assert acc["auto_funding"]["enabled"] is True
    assert int(acc["ledger"]["total_balance"]) == 10 * 10**18


def test_wrong_api_key_refused(serve):
    bad = openai.OpenAI(base_url=f"{serve}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        bad.models.list()
    assert info.value.body["type"] == "authentication_error"


def test_models(client):
    models = client.models.list()
    assert [m.id for m in models.data] == ["z-image"]  # the devnet's on-chain name


def test_image_sync_verified_and_billed(client, stack, user_broker):
    st, _ = stack
    price = st.service.output_price
    local, gateway = _local_fee(user_broker, st.provider_address), _gateway_fee(stack, user_broker)
    raw = client.images.with_raw_response.generate(
        prompt="a red fox", n=1, size="64x64", response_format="b64_json"
    )
    image = raw.parse()
    png = base64.b64decode(image.data[0].b64_json)
    assert Image.open(io.BytesIO(png)).format == "PNG"
    assert raw.headers["X-0G-Verified"] == "true"
    assert raw.headers["ZG-Res-Key"]
    assert int(raw.headers["X-0G-Fee"]) == price
    assert _local_fee(user_broker, st.provider_address) - local == price
    assert _gateway_fee(stack, user_broker) - gateway == price


def test_image_async_job(serve, stack):
    headers = {"Authorization": f"Bearer {API_KEY}"}
    with httpx.Client(base_url=serve, headers=headers, timeout=300) as c:
        r = c.post(
            "/v1/async/images/generations",
            json={"prompt": "a fox", "size": "64x64", "response_format": "b64_json"},
        )
        assert r.status_code == 202, r.text
        assert r.headers["Retry-After"] and r.headers["X-0G-Verified"] == "true"
        job_id = r.json()["jobId"]
        deadline = time.monotonic() + 240
        while True:
            job = c.get(f"/v1/async/jobs/{job_id}")
            assert job.status_code == 200, job.text
            if job.json()["status"] in ("completed", "failed"):
                break
            assert "Retry-After" in job.headers
            assert time.monotonic() < deadline
            time.sleep(float(job.headers["Retry-After"]) / 4)
        assert job.json()["status"] == "completed"
        assert job.json()["data"]["data"][0]["b64_json"]
        missing = c.get("/v1/async/jobs/nope")
        assert missing.status_code == 404 and "error" in missing.json()


def test_image_edit(client, stack):
    buf = io.BytesIO()
    Image.new("RGB", (64, 64), "white").save(buf, format="PNG")
    raw = client.images.with_raw_response.edit(
        image=("in.png", buf.getvalue(), "image/png"),
        prompt="make it blue",
        size="64x64",
        response_format="b64_json",
    )
    assert raw.parse().data[0].b64_json
    assert raw.headers["X-0G-Verified"] == "true"


def test_chat_non_stream_keeps_model_and_headers(client, stack, user_broker):
    st, _ = stack
    before = _local_fee(user_broker, st.provider_address)
    raw = client.chat.completions.with_raw_response.create(
        model="my-model", messages=[{"role": "user", "content": "hi"}]
    )
    completion = raw.parse()
    assert completion.model == "my-model"  # the caller's model is kept
    assert completion.choices[0].message.content == "hello there"
    assert raw.headers["ZG-Res-Key"] and raw.headers["X-0G-Verified"] == "true"
    assert _local_fee(user_broker, st.provider_address) - before == st.service.output_price


def test_chat_stream_incremental_and_billed(client, stack, user_broker, serve):
    st, _ = stack
    before = _local_fee(user_broker, st.provider_address)
    stream = client.chat.completions.create(
        model="chat-x", stream=True, messages=[{"role": "user", "content": "count"}]
    )
    arrivals, words, usage = [], [], None
    for chunk in stream:
        arrivals.append(time.monotonic())
        if chunk.choices:
            words.append(chunk.choices[0].delta.content)
        if chunk.usage:
            usage = chunk.usage
    assert "".join(words) == "one two three"
    assert chunk.model == "chat-x"
    assert usage is not None and usage.completion_tokens == 5  # include_usage was requested
    assert arrivals[-1] - arrivals[0] >= 0.5  # chunks arrived as they were made
    assert _local_fee(user_broker, st.provider_address) - before == st.service.output_price
    acc = httpx.get(serve + "/v1/account", headers={"Authorization": f"Bearer {API_KEY}"}).json()
    assert acc["recent_verifications"][0]["verified"] is True


def test_audio_transcription(client):
    result = client.audio.transcriptions.create(
        file=("a.wav", b"RIFF....WAVE", "audio/wav"), model="whisper-x"
    )
    assert result.text == "transcribed with whisper-x"


def test_verify_route(serve, client):
    raw = client.chat.completions.with_raw_response.create(
        model="tiny", messages=[{"role": "user", "content": "hi"}]
    )
    headers = {"Authorization": f"Bearer {API_KEY}"}
    # without a model the provider's default is inserted
    plain = httpx.post(
        serve + "/v1/chat/completions",
        headers=headers,
        json={"messages": [{"role": "user", "content": "hi"}]},
        timeout=60,
    )
    assert plain.status_code == 200 and plain.json()["model"] == "z-image"
    ok = httpx.post(serve + "/v1/verify", json={"id": raw.headers["ZG-Res-Key"]}, headers=headers)
    assert ok.json()["isValid"] is True
    unknown = httpx.post(serve + "/v1/verify", json={"id": "no-such-id"}, headers=headers).json()
    assert unknown["isValid"] is False and unknown["reason"] == "signature_unavailable"
    missing = httpx.post(serve + "/v1/verify", json={}, headers=headers)
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "missing_id"


@pytest.mark.parametrize(
    ("backend_status", "error", "status", "etype"),
    [
        (402, openai.APIStatusError, 402, "insufficient_quota"),
        (429, openai.RateLimitError, 429, "rate_limit_error"),
        (500, openai.APIStatusError, 502, "upstream_error"),
        (504, openai.APIStatusError, 504, "upstream_timeout"),
    ],
)
def test_upstream_errors_mapped(client, stack, user_broker, backend_status, error, status, etype):
    st, _ = stack
    before = _local_fee(user_broker, st.provider_address)
    gateway = _gateway_fee(stack, user_broker)
    with pytest.raises(error) as info:
        client.chat.completions.create(
            model="tiny", messages=[{"role": "user", "content": f"__status_{backend_status}__"}]
        )
    assert info.value.status_code == status
    assert info.value.body["type"] == etype
    if status == 429:
        assert info.value.response.headers["Retry-After"] == "7"
    assert _local_fee(user_broker, st.provider_address) == before  # nothing billed
    assert _gateway_fee(stack, user_broker) == gateway


def test_prompt_required(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.images.generate(prompt="")
    assert info.value.body["code"] == "missing_prompt"


def test_bad_input_refused_and_not_billed(serve, stack, user_broker):
    """Malformed JSON, a non-object body and an oversized body get typed 400/413 errors in OpenAI's
    shape, and nothing reaches the provider or is billed."""
    st, _ = stack
    before = _local_fee(user_broker, st.provider_address)
    gateway = _gateway_fee(stack, user_broker)
    auth = {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"}
    with httpx.Client(base_url=serve, headers=auth, timeout=60) as c:
        r = c.post("/v1/images/generations", content=b'{"prompt": "a fox",')
        assert r.status_code == 400
        assert r.json()["error"]["message"] == "request body is not valid JSON"
        r = c.post("/v1/chat/completions", content=b'["not", "an", "object"]')
        assert r.status_code == 400
        assert r.json()["error"]["message"] == "request body must be a JSON object"
        big = b'{"prompt": "' + b"x" * (32 << 20) + b'"}'
        r = c.post("/v1/images/generations", content=big)
        assert r.status_code == 413
        assert r.json()["error"]["type"] == "invalid_request_error"
    assert _local_fee(user_broker, st.provider_address) == before
    assert _gateway_fee(stack, user_broker) == gateway


def test_metrics(serve, client):
    client.models.list()
    text = httpx.get(serve + "/metrics", headers={"Authorization": f"Bearer {API_KEY}"}).text
    assert 'zg_serve_requests_total{route="/v1/models",status="200"}' in text
    assert 'zg_serve_verifications_total{reason="verified",result="true"}' in text
    assert "zg_serve_fees_neuron_total" in text
    assert 'zg_serve_balance_neuron{account="sub_account"}' in text
    assert 'zg_serve_upstream_responses_total{route="chat/completions",status="429"}' in text
    assert 'zg_serve_funding_events_total{kind="check"}' in text


def test_enforce_refuses_unverified(stack, user_broker):
    st, _ = stack
    gw = st.gateway
    settings = ServeSettings(provider=st.provider_address, verify="enforce", extra_routes=True)
    with ThreadServer(create_app(user_broker, settings, run_startup=False)) as url:
        c = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=300)
        ok = c.images.with_raw_response.generate(
            prompt="fox", size="64x64", response_format="b64_json"
        )
        assert ok.headers["X-0G-Verified"] == "true"
        real = gw.signatures.signer
        gw.signatures.signer = LocalTeeSigner(bytes.fromhex("22" * 32))  # wrong TEE key
        try:
            before = _gateway_fee(stack, user_broker)
            with pytest.raises(openai.APIStatusError) as info:
                c.images.generate(prompt="fox", size="64x64", response_format="b64_json")
            assert info.value.status_code == 502
            assert info.value.body["type"] == "verification_error"
            assert info.value.body["code"] == "signer_mismatch"
            # the provider billed the one request it served; nothing retried, nothing more
            assert _gateway_fee(stack, user_broker) - before == st.service.output_price
            with pytest.raises(openai.APIError, match="did not verify"):
                for _ in c.chat.completions.create(
                    model="tiny", stream=True, messages=[{"role": "user", "content": "x"}]
                ):
                    pass
        finally:
            gw.signatures.signer = real


@pytest.mark.parametrize("route", ["images/edits", "audio/transcriptions"])
def test_multipart_routes_refuse_other_content_types(serve, route):
    """A JSON body to a multipart route is refused before anything is sent or billed (by the web
    guard, in front of the handler's own check)."""
    r = httpx.post(
        f"{serve}/v1/{route}",
        headers={"Authorization": f"Bearer {API_KEY}"},
        json={"model": "z-image", "prompt": "x"},
    )
    assert r.status_code == 415, r.text
    err = r.json()["error"]
    assert err["code"] == "unsupported_media_type" and route in err["message"]
    assert r.headers.get("X-0G-Fee") is None
