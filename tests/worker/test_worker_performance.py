"""The worker's speed settings (attention backend, torch.compile, CUDA graphs, batching of ``n``):
parsing and start-up validation, the fall-backs on a CPU-only machine with their reasons in
``/v1/internal/status`` and ``/health``, and batched ``n`` against one call per image and single
requests with the following seeds (the tiny random-weight pipeline, real HTTP server)."""

from __future__ import annotations

import importlib.util

import httpx
import numpy as np
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from broker.cli.worker import app as worker_cli
from broker.worker.pipelines.performance import (
    PerformanceOptions,
    apply_performance,
    inductor_mode,
)
from broker.worker.settings import WorkerSettings

pytestmark = [pytest.mark.worker, pytest.mark.timeout(180)]


def test_defaults_and_environment_values(monkeypatch):
    settings = WorkerSettings()
    assert settings.performance_options() == PerformanceOptions(
        attention_backend="auto", compile=False, compile_mode="default", cuda_graphs=False
    )
    assert settings.batch_n is True
    for name, value in {
        "ATTENTION_BACKEND": "_flash_3",
        "COMPILE": "true",
        "COMPILE_MODE": "max-autotune",
        "CUDA_GRAPHS": "1",
        "BATCH_N": "false",
    }.items():
        monkeypatch.setenv(f"ZG_WORKER_{name}", value)
    options = WorkerSettings().performance_options()
    assert options == PerformanceOptions("_flash_3", True, "max-autotune", True, False)


@pytest.mark.parametrize(
    ("env", "field"),
    [
        ({"ZG_WORKER_ATTENTION_BACKEND": "flash-attention"}, "attention_backend"),
        ({"ZG_WORKER_ATTENTION_BACKEND": "eager; rm -rf /"}, "attention_backend"),
        ({"ZG_WORKER_COMPILE": "sometimes"}, "compile"),
        ({"ZG_WORKER_COMPILE_MODE": "reduce-overhead"}, "compile_mode"),  # use cuda_graphs
        ({"ZG_WORKER_BATCH_N": "2"}, "batch_n"),
    ],
)
def test_bad_values_are_refused_at_start_up(monkeypatch, env, field):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError) as err:
        WorkerSettings()
    assert err.value.errors()[0]["loc"] == (field,)
    result = CliRunner().invoke(worker_cli, ["serve", "--model", "tiny"], env=env)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"Error: invalid ZG_WORKER_{field.upper()}:")
    assert "Traceback" not in result.output


def test_cuda_graphs_without_compile_is_refused(monkeypatch):
    monkeypatch.setenv("ZG_WORKER_CUDA_GRAPHS", "true")
    with pytest.raises(ValidationError, match="cuda_graphs needs compile"):
        WorkerSettings()
    result = CliRunner().invoke(worker_cli, ["serve", "--model", "tiny"])
    assert result.exit_code == 1 and "cuda_graphs needs compile" in result.output
    assert len(result.output.strip().splitlines()) == 1
    with pytest.raises(ValueError, match="cuda_graphs needs compile"):
        PerformanceOptions(cuda_graphs=True)
    with pytest.raises(ValueError, match="unknown attention backend"):
        PerformanceOptions(attention_backend="xformers")


def test_compile_modes_map_to_torch_compile_modes():
    assert inductor_mode("default", False) == "default"
    assert inductor_mode("default", True) == "reduce-overhead"  # captures CUDA graphs
    assert inductor_mode("max-autotune", False) == "max-autotune-no-cudagraphs"
    assert inductor_mode("max-autotune", True) == "max-autotune"


# -- on the real tiny pipeline ----------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_pipes():
    pytest.importorskip("diffusers")
    from broker.worker.pipelines.tiny import build_tiny_pipelines

    return build_tiny_pipelines("cpu")


def _pipes_list(pipes):
    return [pipes.text_to_image, pipes.image_to_image, pipes.inpaint]


def test_unsupported_settings_fall_back_with_the_reason_on_cpu(tiny_pipes, caplog):
    if importlib.util.find_spec("flash_attn") is not None:
        pytest.skip("flash-attn is installed here")
    transformer = tiny_pipes.text_to_image.transformer
    report = apply_performance(
        transformer,
        _pipes_list(tiny_pipes),
        "cpu",
        PerformanceOptions(attention_backend="flash", compile=True, cuda_graphs=True),
    )
    assert report.attention_backend == "native" and report.compile is None
    assert report.cuda_graphs is False and report.batch_n is True
    assert report.notes == [
        "attention backend 'flash' off: flash-attn is not installed; native SDPA used",
        "torch.compile with CUDA graphs off: used on CUDA only (device cpu)",
    ]
    assert getattr(transformer, "_compiled_call_impl", None) is None  # not compiled
    logged = [r.getMessage() for r in caplog.records if "performance setting off" in r.getMessage()]
    assert len(logged) == 2  # one log line per setting switched off

    report = apply_performance(
        transformer, _pipes_list(tiny_pipes), "cpu", PerformanceOptions("_native_flash")
    )
    assert report.attention_backend == "native"
    assert report.notes == [
        "attention backend '_native_flash' off: it needs CUDA (device cpu); native SDPA used"
    ]


def test_a_cpu_backend_is_applied_to_every_attention_processor(tiny_pipes):
    transformer = tiny_pipes.text_to_image.transformer
    try:
        report = apply_performance(
            transformer, _pipes_list(tiny_pipes), "cpu", PerformanceOptions("_native_math")
        )
        assert report.attention_backend == "_native_math" and report.notes == []
        backends = {
            str(getattr(m.processor, "_attention_backend", None))
            for m in transformer.modules()
            if hasattr(m, "processor")
        }
        assert backends == {"AttentionBackendName._NATIVE_MATH"}
    finally:
        transformer.reset_attention_backend()


def test_batch_n_off_is_reported(tiny_pipes):
    report = apply_performance(
        tiny_pipes.text_to_image.transformer,
        _pipes_list(tiny_pipes),
        "cpu",
        PerformanceOptions(batch_n=False),
    )
    assert report.batch_n is False and report.notes == []


def test_status_and_health_show_what_is_off_and_why(serve_app):
    pytest.importorskip("diffusers")
    from broker.worker.app import create_app

    settings = WorkerSettings(
        model="tiny",
        device="cpu",
        idle_unload_seconds=0,
        attention_backend="_native_cudnn",
        compile=True,
    )
    with serve_app(create_app(settings)) as url, httpx.Client(base_url=url, timeout=60) as http:
        assert http.get("/v1/internal/status").json()["performance"] is None  # not loaded yet
        body = {"prompt": "a red fox", "size": "32x32", "num_inference_steps": 1, "n": 2}
        r = http.post("/v1/images/generations", json=body)
        assert r.status_code == 200, r.text
        assert len(r.json()["data"]) == 2
        expected = {
            "attention_backend": "native",
            "compile": None,
            "cuda_graphs": False,
            "batch_n": True,
            "notes": [
                (
                    "attention backend '_native_cudnn' off: it needs CUDA (device cpu); "
                    "native SDPA used"
                ),
                "torch.compile off: used on CUDA only (device cpu)",
            ],
        }
        assert http.get("/v1/internal/status").json()["performance"] == expected
        assert http.get("/health").json()["performance"] == expected


# -- batched n --------------------------------------------------------------------------------


def _images(pipes, batch_n: bool, n: int, seed: int, guidance: float = 0.0) -> list[np.ndarray]:
    from broker.worker.engine import ImageEngine, ImageTask

    engine = ImageEngine(
        "tiny",
        "cpu",
        queue_size=0,
        loader=lambda model, device: pipes,  # the module's tiny model, built once
        performance=PerformanceOptions(batch_n=batch_n),
    )
    try:
        task = ImageTask(
            prompt="a red fox in the snow",
            n=n,
            width=48,
            height=32,
            num_inference_steps=2,
            guidance_scale=guidance,
            seed=seed,
        )
        generation = engine.submit(task).result(timeout=120)
        assert engine.status().performance.batch_n is batch_n
    finally:
        engine.shutdown()
    return [np.asarray(image, dtype=np.int16) for image in generation.images]


def test_batched_n_equals_one_call_per_image_and_single_requests_with_the_next_seeds(tiny_pipes):
    batched = _images(tiny_pipes, True, 3, seed=41)
    one_by_one = _images(tiny_pipes, False, 3, seed=41)
    singles = [_images(tiny_pipes, True, 1, seed=41 + i)[0] for i in range(3)]
    assert len(batched) == len(one_by_one) == 3
    for i in range(3):
        # batched matrix products round differently from single ones: at most 1/255 apart
        assert np.abs(batched[i] - one_by_one[i]).max() <= 1
        assert np.abs(batched[i] - singles[i]).max() <= 1
        for j in range(i):  # n distinct images
            assert np.abs(batched[i] - batched[j]).mean() > 10


def test_guided_batched_request_and_the_largest_seed(tiny_pipes):
    guided = _images(
        tiny_pipes, True, 2, seed=7, guidance=2.5
    )  # positive + negative prompt in one batch
    assert len(guided) == 2 and np.abs(guided[0] - guided[1]).mean() > 10
    top = _images(
        tiny_pipes, True, 2, seed=2**63 - 1
    )  # image 1 uses seed 2**63, still a valid seed
    assert len(top) == 2 and np.abs(top[0] - top[1]).mean() > 10
