"""``enable_safety_checker`` never pretends: with a real diffusers safety checker loaded (a tiny
random-weight one saved and loaded back through ``from_pretrained``), flagged images are withheld
and reported per image (``has_nsfw_concepts``); without one the answer says no check ran."""

from __future__ import annotations

import base64
import io

import httpx
import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

from PIL import Image

from broker.worker.app import create_app
from broker.worker.errors import ModelLoadError
from broker.worker.pipelines.safety import build_tiny_safety_checker, load_safety_checker
from broker.worker.settings import WorkerSettings

pytestmark = [pytest.mark.worker, pytest.mark.timeout(120)]

BODY = {"prompt": "a street at night", "size": "32x32", "num_inference_steps": 2, "seed": 5}


def _checker_dir(tmp_path, threshold: float):
    """A tiny checker saved like a Hub one; every concept threshold set to ``threshold`` (-1 flags
    every image: a cosine similarity is always above it; 1 flags none)."""
    import torch

    checker = build_tiny_safety_checker("cpu")
    with torch.no_grad():
        checker.model.concept_embeds_weights.fill_(threshold)
        checker.model.special_care_embeds_weights.fill_(1.0)
    path = tmp_path / f"checker-{threshold}"
    checker.model.save_pretrained(path)
    checker.feature_extractor.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    base = tmp_path_factory.mktemp("safety")
    return {"flag_all": _checker_dir(base, -1.0), "flag_none": _checker_dir(base, 1.0)}


def _worker(serve_app, checker):
    settings = WorkerSettings(
        model="tiny",
        device="cpu",
        idle_unload_seconds=0,
        safety_checker=str(checker) if checker else None,
    )
    return serve_app(create_app(settings))


def test_flagged_images_are_withheld_and_reported(serve_app, dirs):
    with _worker(serve_app, dirs["flag_all"]) as url, httpx.Client(base_url=url, timeout=60) as c:
        assert c.get("/health").json()["safety_checker"] == str(dirs["flag_all"])
        for response_format in ("b64_json", "url"):
            r = c.post(
                "/v1/images/generations", json={**BODY, "n": 2, "response_format": response_format}
            )
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["safety_checked"] is True
            assert [item["has_nsfw_concepts"] for item in body["data"]] == [True, True]
            for item in body["data"]:
                assert "b64_json" not in item and "url" not in item  # nothing leaks
        # the request may opt out: then the answer says no check ran, and the image is returned
        r = c.post("/v1/images/generations", json={**BODY, "enable_safety_checker": False})
        body = r.json()
        assert body["safety_checked"] is False and body["data"][0]["b64_json"]
        assert "has_nsfw_concepts" not in body["data"][0]


def test_clean_images_pass_with_a_verdict(serve_app, dirs):
    with _worker(serve_app, dirs["flag_none"]) as url, httpx.Client(base_url=url, timeout=60) as c:
        r = c.post("/v1/images/generations", json={**BODY, "enable_safety_checker": True})
        body = r.json()
        assert r.status_code == 200 and body["safety_checked"] is True
        item = body["data"][0]
        assert item["has_nsfw_concepts"] is False
        assert Image.open(io.BytesIO(base64.b64decode(item["b64_json"]))).size == (32, 32)
        # edits are checked too
        buffer = io.BytesIO()
        Image.new("RGB", (32, 32), (9, 9, 9)).save(buffer, format="PNG")
        r = c.post(
            "/v1/images/edits",
            data={"prompt": "x", "num_inference_steps": "1"},
            files={"image": ("a.png", buffer.getvalue(), "image/png")},
        )
        assert r.json()["safety_checked"] is True
        assert r.json()["data"][0]["has_nsfw_concepts"] is False


def test_without_a_checker_the_answer_says_no_check_ran(serve_app):
    with _worker(serve_app, None) as url, httpx.Client(base_url=url, timeout=60) as c:
        assert c.get("/health").json()["safety_checker"] is None
        r = c.post("/v1/images/generations", json={**BODY, "enable_safety_checker": True})
        body = r.json()
        assert r.status_code == 200 and body["safety_checked"] is False
        assert body["data"][0]["b64_json"] and "has_nsfw_concepts" not in body["data"][0]
        plain = c.post("/v1/images/generations", json=BODY).json()
        assert "safety_checked" not in plain  # nothing asked, nothing claimed


def test_a_checker_that_fails_to_load_is_500_naming_it(serve_app, tmp_path):
    missing = tmp_path / "no-checker"
    with pytest.raises(ModelLoadError, match="cannot load safety checker"):
        load_safety_checker(str(missing), "cpu")
    with _worker(serve_app, missing) as url, httpx.Client(base_url=url, timeout=60) as c:
        r = c.post("/v1/images/generations", json=BODY)
        assert r.status_code == 500
        error = r.json()["error"]
        assert error["code"] == "model_load_failed" and str(missing) in error["message"]
        assert "safety checker" in c.get("/health").json()["load_error"]
