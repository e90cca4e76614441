"""Parity with the Z-Image Vision server API (seed 003) over real HTTP with the tiny pipeline:
generation parameters reach the pipeline (cfg_normalization, cfg_truncation), revised_prompt, the
real model's sizes (multiples of 16 up to 2048 per side), edit defaults (url, input size, guidance),
upload errors without Python reprs, and a model that fails to load (500 naming the cause, the next
request retries)."""

from __future__ import annotations

import base64
import io

import httpx
import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

from PIL import Image

from broker.worker.app import create_app
from broker.worker.engine import ImageEngine
from broker.worker.images import FileStore
from broker.worker.jobs import JobRegistry
from broker.worker.pipelines import load_pipelines
from broker.worker.protocol import ImageEditForm
from broker.worker.serving import ImageService
from broker.worker.settings import WorkerSettings

pytestmark = [pytest.mark.worker, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def http(serve_app):
    settings = WorkerSettings(model="tiny", device="cpu", idle_unload_seconds=0)
    with serve_app(create_app(settings)) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield client


def _pixels(body: dict) -> bytes:
    image = Image.open(io.BytesIO(base64.b64decode(body["data"][0]["b64_json"])))
    return image.convert("RGB").tobytes()


def _png(size=(64, 48), color=(30, 60, 90)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


def _generate(http, **fields) -> dict:
    body = {"prompt": "a lake at dawn", "size": "32x32", "seed": 11, **fields}
    r = http.post("/v1/images/generations", json=body)
    assert r.status_code == 200, r.text
    return r.json()


def test_cfg_normalization_reaches_the_pipeline(http):
    guided = {"guidance_scale": 4.0, "negative_prompt": "blurry", "num_inference_steps": 3}
    off = _generate(http, cfg_normalization=False, **guided)
    on = _generate(http, cfg_normalization=True, **guided)
    assert _pixels(off) != _pixels(on)  # was accepted and dropped: identical pixels
    assert _pixels(_generate(http, **guided)) == _pixels(off)  # default False, as diffusers'


def test_cfg_truncation_reaches_the_pipeline(http):
    guided = {"guidance_scale": 4.0, "num_inference_steps": 3}
    full = _generate(http, cfg_truncation=1.0, **guided)
    truncated = _generate(http, cfg_truncation=0.0, **guided)  # guidance only on the first step
    unguided = _generate(http, guidance_scale=0.0, num_inference_steps=3)
    assert len({_pixels(full), _pixels(truncated), _pixels(unguided)}) == 3


def test_revised_prompt_is_the_prompt_used(http):
    prompt = "A beautiful sunset over a mountain lake, photorealistic"
    body = _generate(http, prompt=prompt, n=2)
    assert [item["revised_prompt"] for item in body["data"]] == [prompt, prompt]
    r = http.post(
        "/v1/images/generations",
        json={"prompt": prompt, "size": "16x16", "response_format": "url"},
    )
    assert r.json()["data"][0]["revised_prompt"] == prompt


@pytest.mark.parametrize("size", ["2048x16", "16x2048"])
def test_the_real_models_largest_side(http, size):
    # 2048 px = 128 patches per side: inside the rotary axes (was refused beyond 128 px).
    body = _generate(http, size=size, num_inference_steps=1)
    width, height = (int(side) for side in size.split("x"))
    image = Image.open(io.BytesIO(base64.b64decode(body["data"][0]["b64_json"])))
    assert image.size == (width, height) and body["size"] == size


def test_unknown_fields_are_ignored_like_the_openai_api(http):
    body = _generate(http, quality="hd", style="vivid", background="auto")
    assert body["size"] == "32x32"


def test_edit_defaults_url_and_input_size(http):
    r = http.post(
        "/v1/images/edits",
        data={"prompt": "make it autumn", "num_inference_steps": "2"},
        files={"image": ("photo.png", _png((80, 48)), "image/png")},
    )
    assert r.status_code == 200, r.text
    item = r.json()["data"][0]
    assert "b64_json" not in item and item["revised_prompt"] == "make it autumn"
    assert item["url"].startswith(str(http.base_url).rstrip("/") + "/v1/images/files/")
    fetched = httpx.get(item["url"])  # a direct worker client can fetch its url
    assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(fetched.content)).size == (80, 48)
    assert r.json()["size"] == "80x48"


@pytest.mark.parametrize(
    ("name", "data", "what"),
    [
        ("notes.txt", b"this is a text file, not a picture\n", "not a PNG/JPEG/WebP image"),
        ("anim.gif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;", "not a PNG/JPEG/WebP image"),
        ("cut.png", _png()[:60], "a truncated or corrupt PNG image"),
    ],
)
def test_edit_with_a_non_image_names_the_formats(http, name, data, what):
    r = http.post(
        "/v1/images/edits",
        data={"prompt": "x"},
        files={"image": (name, data, "application/octet-stream")},
    )
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == "image" and error["code"] == "invalid_image"
    assert error["message"] == f"image is {what}"
    assert "BytesIO" not in r.text and "0x" not in r.text


def test_edit_guidance_default_follows_the_model(tmp_path):
    # Turbo (and the tiny model) are guidance-distilled: 0.0; a base model's edits default to 1.5.
    def edit_guidance(model: str) -> float:
        engine = ImageEngine(model, "cpu")
        service = ImageService(
            WorkerSettings(model=model), engine, JobRegistry(60), FileStore(60), None
        )
        form = ImageEditForm(prompt="x")
        assert form.response_format == "url"
        try:
            return service.edit_task(form, [_png((32, 32))], None).guidance_scale
        finally:
            engine.shutdown()

    assert edit_guidance("tiny") == 0.0
    assert edit_guidance("Tongyi-MAI/Z-Image-Turbo") == 0.0
    assert edit_guidance(str(tmp_path / "Z-Image-Base")) == 1.5


def test_model_load_failure_is_500_naming_the_cause_then_retried(serve_app, tmp_path):
    model_dir = tmp_path / "zimage-model"
    settings = WorkerSettings(model=str(model_dir), device="cpu", idle_unload_seconds=0)
    body = {"prompt": "a boat", "size": "32x32", "num_inference_steps": 1}
    with serve_app(create_app(settings)) as url, httpx.Client(base_url=url, timeout=60) as c:
        r = c.post("/v1/images/generations", json=body)
        assert r.status_code == 500, r.text
        error = r.json()["error"]
        assert error["code"] == "model_load_failed" and error["type"] == "server_error"
        assert error["message"].startswith("Model loading failed: cannot load Z-Image model")
        assert str(model_dir) in error["message"]
        health = c.get("/health").json()
        assert health["model_loaded"] is False and "cannot load" in health["load_error"]
        assert c.get("/v1/internal/status").json()["status"] == "idle"
        # The operator fixes the model; the next request loads it without a restart.
        load_pipelines("tiny", "cpu").text_to_image.save_pretrained(model_dir)
        r = c.post("/v1/images/generations", json=body)
        assert r.status_code == 200, r.text
        health = c.get("/health").json()
        assert health["model_loaded"] is True and health["load_error"] is None
