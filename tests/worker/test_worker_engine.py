"""Engine behaviour over real HTTP: lazy loading, one job at a time behind a bounded queue (429 with
Retry-After), job states, GPU errors → failed jobs, and the idle unload timer.

The engine's ``loader`` hook wraps the real tiny pipeline so a test can hold a job on the executor
(a gate) or make the pipeline raise, which makes the queue states deterministic.
"""

from __future__ import annotations

import threading
import time

import httpx
import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

from broker.worker.app import create_app
from broker.worker.engine import ImageEngine, ImageTask
from broker.worker.errors import GenerationError, QueueFullError
from broker.worker.pipelines import load_pipelines
from broker.worker.settings import WorkerSettings

pytestmark = [pytest.mark.worker, pytest.mark.timeout(120)]


class GatedLoader:
    """Loads the tiny pipelines; text-to-image calls wait for ``gate`` and raise for 'explode'."""

    def __init__(self):
        self.gate = threading.Event()
        self.gate.set()
        self.loads = 0

    def __call__(self, model: str, device: str):
        pipes = load_pipelines(model, device)
        self.loads += 1
        real = pipes.text_to_image
        gate = self.gate

        def gated(**kwargs):
            assert gate.wait(60)
            if kwargs["prompt"] == "explode":
                raise RuntimeError("CUDA out of memory (simulated)")
            return real(**kwargs)

        pipes.text_to_image = gated
        return pipes


def _wait_for(predicate, timeout=30.0, interval=0.02):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(interval)


def _task(prompt="a cat", seed=1):
    return ImageTask(
        prompt=prompt,
        n=1,
        width=32,
        height=32,
        num_inference_steps=2,
        guidance_scale=0.0,
        seed=seed,
    )


@pytest.fixture(scope="module")
def gated():
    return GatedLoader()


@pytest.fixture(scope="module")
def worker(serve_app, gated):
    settings = WorkerSettings(model="tiny", device="cpu", queue_size=1, idle_unload_seconds=1.0)
    engine = ImageEngine("tiny", "cpu", queue_size=1, idle_unload_seconds=1.0, loader=gated)
    with (
        serve_app(create_app(settings, engine=engine)) as url,
        httpx.Client(base_url=url, timeout=60) as client,
    ):
        yield client


def test_queue_full_states_and_idle_unload(worker, gated):
    status = worker.get("/v1/internal/status").json()
    assert status["loaded"] is False and status["status"] == "idle"

    gated.gate.clear()
    first = worker.post("/v1/async/images/generations", json={"prompt": "one", "size": "32x32"})
    assert first.status_code == 202
    _wait_for(lambda: worker.get("/v1/internal/status").json()["status"] == "generating")
    status = worker.get("/v1/internal/status").json()
    assert status["loaded"] is True and status["running"] == 1 and status["queue_length"] == 0

    second = worker.post("/v1/async/images/generations", json={"prompt": "two", "size": "32x32"})
    assert second.status_code == 202
    assert worker.get("/v1/internal/status").json()["queue_length"] == 1

    full = worker.post("/v1/images/generations", json={"prompt": "three", "size": "32x32"})
    assert full.status_code == 429
    assert int(full.headers["retry-after"]) >= 1
    assert full.json()["error"]["code"] == "queue_full"
    full_async = worker.post("/v1/async/images/generations", json={"prompt": "3", "size": "32x32"})
    assert full_async.status_code == 429 and "retry-after" in full_async.headers

    one = worker.get(first.headers["location"])
    two = worker.get(second.headers["location"])
    assert one.json()["status"] == "running" and int(one.headers["retry-after"]) >= 1
    assert two.json()["status"] == "pending" and int(two.headers["retry-after"]) >= 1

    gated.gate.set()
    for response in (first, second):
        _wait_for(
            lambda r=response: worker.get(r.headers["location"]).json()["status"] == "completed"
        )
    assert gated.loads == 1

    # Idle unload after 1 s without work; the next request loads lazily again.
    assert worker.get("/v1/internal/status").json()["loaded"] is True
    _wait_for(lambda: worker.get("/v1/internal/status").json()["loaded"] is False, timeout=15)
    assert (
        worker.post("/v1/images/generations", json={"prompt": "again", "size": "16x16"}).status_code
        == 200
    )
    assert gated.loads == 2


def test_pipeline_error_fails_the_job(worker):
    r = worker.post("/v1/async/images/generations", json={"prompt": "explode", "size": "16x16"})
    assert r.status_code == 202
    _wait_for(lambda: worker.get(r.headers["location"]).json()["status"] == "failed")
    job = worker.get(r.headers["location"]).json()
    assert "out of memory" in job["error"]["message"]
    assert "data" not in job
    sync = worker.post("/v1/images/generations", json={"prompt": "explode", "size": "16x16"})
    assert sync.status_code == 500
    assert sync.json()["error"]["code"] == "generation_failed"
    assert worker.get("/v1/internal/status").json()["status"] == "idle"


def test_engine_direct_queue_and_unload():
    loader = GatedLoader()
    engine = ImageEngine("tiny", "cpu", queue_size=0, idle_unload_seconds=0, loader=loader)
    try:
        assert engine.unload() is False
        loader.gate.clear()
        running = engine.submit(_task())
        with pytest.raises(QueueFullError) as err:
            engine.submit(_task())
        assert err.value.retry_after >= 1
        loader.gate.set()
        generation = running.result(timeout=60)
        assert len(generation.images) == 1 and generation.images[0].size == (32, 32)
        assert generation.has_nsfw_concepts is None  # no checker: no verdict
        with pytest.raises(GenerationError, match="simulated"):
            engine.submit(_task("explode")).result(timeout=60)
        assert engine.status().loaded is True
        assert engine.unload() is True and engine.status().loaded is False
    finally:
        loader.gate.set()
        engine.shutdown()
