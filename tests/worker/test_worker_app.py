"""The worker over real HTTP (uvicorn on loopback) with the tiny Z-Image pipeline: the OpenAI
client, output formats, n, sizes, validation errors, url files, edits, async jobs with webhooks,
status."""

from __future__ import annotations

import base64
import io
import time

import httpx
import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

from PIL import Image

from broker.worker.app import create_app
from broker.worker.settings import WorkerSettings

pytestmark = [pytest.mark.worker, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def worker_url(serve_app):
    settings = WorkerSettings(
        model="tiny",
        device="cpu",
        idle_unload_seconds=0,
        queue_size=8,
        webhook_allow_private=True,  # the webhook receiver listens on loopback
    )
    with serve_app(create_app(settings)) as url:
        yield url


@pytest.fixture(scope="module")
def http(worker_url):
    with httpx.Client(base_url=worker_url, timeout=60) as client:
        yield client


def _decode(b64: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(b64)))
    image.load()
    return image


def _png_bytes(size=(64, 64), color=(10, 120, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def test_lazy_load_status_health_models(http):
    status = http.get("/v1/internal/status").json()
    assert status["loaded"] is False and status["status"] == "idle" and "state" not in status
    assert status["queue_length"] == 0 and status["model"] == "tiny"
    assert status["load_error"] is None
    health = http.get("/health").json()
    assert health == {
        "status": "ok",
        "model_loaded": False,
        "model": "tiny",
        "state": "idle",
        "load_error": None,
        "safety_checker": None,
        "performance": None,  # known once the model is loaded
    }
    models = http.get("/v1/models").json()
    assert models["object"] == "list" and models["data"][0]["id"] == "tiny"
    card = models["data"][0]
    assert card["capabilities"] == ["text-to-image", "image-to-image"]
    assert card["limits"]["max_side"] == 2048 and card["limits"]["size_multiple"] == 16
    assert card["limits"]["default_size"] == "1024x1024"
    assert http.get("/v1/internal/status").json()["loaded"] is False  # models did not load it
    r = http.post("/v1/images/generations", json={"prompt": "a red fox", "size": "32x32"})
    assert r.status_code == 200, r.text
    assert http.get("/v1/internal/status").json()["loaded"] is True
    health = http.get("/health").json()
    assert health["model_loaded"] is True
    assert health["performance"] == {
        "attention_backend": "native",
        "compile": None,
        "cuda_graphs": False,
        "batch_n": True,
        "notes": [],
    }


def test_openai_client_generate(worker_url):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{worker_url}/v1", api_key="unused")
    result = client.images.generate(
        model="tiny",
        prompt="a lighthouse at dawn",
        size="64x64",
        response_format="b64_json",
        extra_body={"num_inference_steps": 2},
    )
    assert len(result.data) == 1
    image = _decode(result.data[0].b64_json)
    assert image.format == "PNG" and image.size == (64, 64)


def test_openai_client_edit(worker_url):
    openai = pytest.importorskip("openai")
    client = openai.OpenAI(base_url=f"{worker_url}/v1", api_key="unused")
    source = io.BytesIO(_png_bytes((48, 32)))
    source.name = "source.png"
    result = client.images.edit(
        model="tiny",
        image=source,
        prompt="make it green",
        n=2,
        response_format="b64_json",
        extra_body={"num_inference_steps": 2},
    )
    assert len(result.data) == 2
    for item in result.data:
        assert _decode(item.b64_json).size == (48, 32)  # size defaults to the input's


def test_edit_with_mask_and_explicit_size(http):
    mask = Image.new("RGBA", (64, 64), (0, 0, 0, 255))
    for x in range(16, 48):
        for y in range(16, 48):
            mask.putpixel((x, y), (0, 0, 0, 0))
    buffer = io.BytesIO()
    mask.save(buffer, format="PNG")
    r = http.post(
        "/v1/images/edits",
        files={"image": ("a.png", _png_bytes(), "image/png"), "mask": ("m.png", buffer.getvalue())},
        data={
            "prompt": "a window",
            "size": "32x32",
            "strength": "0.8",
            "seed": "3",
            "response_format": "b64_json",
        },
    )
    assert r.status_code == 200, r.text
    assert _decode(r.json()["data"][0]["b64_json"]).size == (32, 32)


@pytest.mark.parametrize(("fmt", "pil"), [("png", "PNG"), ("jpeg", "JPEG"), ("webp", "WEBP")])
def test_output_formats(http, fmt, pil):
    r = http.post(
        "/v1/images/generations",
        json={
            "prompt": "a tree",
            "size": "64x32",
            "output_format": fmt,
            "seed": 1,
            "num_inference_steps": 2,
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["output_format"] == fmt and body["size"] == "64x32" and body["seed"] == 1
    image = _decode(body["data"][0]["b64_json"])
    assert image.format == pil and image.size == (64, 32)


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_n_images(http, n):
    r = http.post(
        "/v1/images/generations?wait=true",
        json={"prompt": "dots", "n": n, "size": "16x16", "num_inference_steps": 2},
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["data"]) == n


def test_seed_is_deterministic(http):
    body = {"prompt": "same", "size": "32x32", "seed": 42, "num_inference_steps": 2}
    first = http.post("/v1/images/generations", json=body).json()["data"][0]["b64_json"]
    second = http.post("/v1/images/generations", json=body).json()["data"][0]["b64_json"]
    other = http.post("/v1/images/generations", json={**body, "seed": 43}).json()["data"][0][
        "b64_json"
    ]
    assert _decode(first).tobytes() == _decode(second).tobytes()
    assert _decode(first).tobytes() != _decode(other).tobytes()


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"prompt": "x", "n": 5}, "n"),
        ({"prompt": "x", "n": 0}, "n"),
        ({"prompt": "x", "size": "big"}, "size"),
        ({"prompt": "x", "size": "66x64"}, "size"),
        ({"prompt": "x", "size": "24x24"}, "size"),  # a multiple of 8 but not of 16
        ({"prompt": "x", "size": "4096x4096"}, "size"),
        ({"prompt": "x", "size": "2064x16"}, "size"),  # one patch beyond 2048
        ({"prompt": "x", "size": "0x0"}, "size"),
        ({"prompt": "x", "cfg_normalization": "maybe"}, "cfg_normalization"),
        ({"prompt": "x", "cfg_truncation": 1.5}, "cfg_truncation"),
        ({"prompt": "x", "max_sequence_length": 513}, "max_sequence_length"),
        ({"prompt": "x", "max_sequence_length": 0}, "max_sequence_length"),
        ({"size": "64x64"}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"prompt": "x", "response_format": "gif"}, "response_format"),
        ({"prompt": "x", "output_format": "bmp"}, "output_format"),
        ({"prompt": "x", "num_inference_steps": 1000}, "num_inference_steps"),
        ({"prompt": "x", "guidance_scale": -1}, "guidance_scale"),
        ({"prompt": "x", "seed": -5}, "seed"),
    ],
)
def test_invalid_input_is_400_naming_the_field(http, body, param):
    r = http.post("/v1/images/generations", json=body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["message"]


def test_invalid_json_and_edit_errors(http):
    r = http.post(
        "/v1/images/generations", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = http.post("/v1/images/edits", data={"prompt": "x"}, files={"other": ("f", b"1")})
    assert r.status_code == 400 and r.json()["error"]["param"] == "image"
    r = http.post("/v1/images/edits", data={"prompt": "x"}, files={"image": ("a.png", b"garbage")})
    assert r.status_code == 400 and r.json()["error"]["param"] == "image"
    r = http.post(
        "/v1/images/edits",
        data={"prompt": "x", "strength": "2"},
        files={"image": ("a.png", _png_bytes())},
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "strength"
    r = http.post(
        "/v1/images/edits",
        data={"prompt": "x"},
        files={"image": ("a.png", _png_bytes()), "mask": ("m.png", _png_bytes((32, 32)))},
    )
    assert r.status_code == 400 and r.json()["error"]["param"] == "mask"


def test_url_response_serves_the_file(http):
    r = http.post(
        "/v1/images/generations",
        json={
            "prompt": "a url",
            "size": "32x32",
            "response_format": "url",
            "output_format": "jpeg",
        },
    )
    assert r.status_code == 200, r.text
    url = r.json()["data"][0]["url"]
    assert url.startswith(str(http.base_url).rstrip("/") + "/v1/images/files/")
    image_response = httpx.get(url)
    assert image_response.status_code == 200
    assert image_response.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(image_response.content)).size == (32, 32)
    assert http.get("/v1/images/files/nope.png").status_code == 404


def test_async_job_lifecycle_with_webhook(http, webhook_receiver):
    r = http.post(
        "/v1/async/images/generations",
        json={
            "prompt": "async fox",
            "n": 2,
            "size": "32x32",
            "num_inference_steps": 3,
            "webhook_url": webhook_receiver.url,
        },
    )
    assert r.status_code == 202, r.text
    created = r.json()
    assert created["status"] == "pending" and created["object"] == "image.generation.job"
    assert created["jobId"] == created["id"]
    assert r.headers["location"] == f"/v1/async/jobs/{created['id']}"
    assert int(r.headers["retry-after"]) >= 1
    seen = set()
    deadline = time.monotonic() + 60
    while True:
        poll = http.get(r.headers["location"])
        assert poll.status_code == 200
        job = poll.json()
        seen.add(job["status"])
        if job["status"] in ("completed", "failed"):
            assert "retry-after" not in poll.headers
            break
        assert int(poll.headers["retry-after"]) >= 1
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert job["status"] == "completed", job
    assert len(job["data"]["data"]) == 2  # the SDK counts data.data.data
    assert _decode(job["data"]["data"][0]["b64_json"]).size == (32, 32)
    assert webhook_receiver.received.wait(15)
    assert webhook_receiver.attempts == 2  # the first POST got a 500 and was retried
    hook = webhook_receiver.bodies[0]
    assert hook["id"] == created["id"] and hook["status"] == "completed"
    assert len(hook["data"]["data"]) == 2


def test_async_edit_and_unknown_job(http):
    r = http.post(
        "/v1/async/images/edits",
        data={"prompt": "edit later", "response_format": "url"},
        files={"image": ("a.png", _png_bytes((32, 32)))},
    )
    assert r.status_code == 202, r.text
    job_id = r.json()["jobId"]
    deadline = time.monotonic() + 60
    while (job := http.get(f"/v1/async/jobs/{job_id}").json())["status"] not in (
        "completed",
        "failed",
    ):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert job["status"] == "completed"
    assert httpx.get(job["data"]["data"][0]["url"]).status_code == 200
    missing = http.get("/v1/async/jobs/imgjob_doesnotexist")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "not_found"


def test_async_rejects_invalid_input_before_queueing(http):
    r = http.post("/v1/async/images/generations", json={"prompt": "x", "n": 9})
    assert r.status_code == 400 and r.json()["error"]["param"] == "n"
    r = http.post("/v1/async/images/generations", json={"prompt": "x", "webhook_url": "ftp://x"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "webhook_url"


def test_unload_endpoint(http):
    http.post(
        "/v1/images/generations",
        json={"prompt": "warm", "size": "16x16", "num_inference_steps": 1},
    )
    r = http.post("/v1/internal/unload")
    assert r.status_code == 200
    assert r.json()["unloaded"] is True and r.json()["status"]["loaded"] is False
    assert http.get("/v1/internal/unload").json()["unloaded"] is False  # GET works; nothing left
    r = http.post(
        "/v1/images/generations",
        json={"prompt": "reload", "size": "16x16", "num_inference_steps": 1},
    )
    assert r.status_code == 200
    assert http.get("/v1/internal/status").json()["loaded"] is True
