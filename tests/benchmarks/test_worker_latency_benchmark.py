"""``benchmarks/worker_latency.py`` on CPU with the tiny model (the path CI exercises): it runs,
its FLOP count agrees with the architecture's analytic count (attention included), and the speed
settings it is given are printed with what is in effect and why the rest is off."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

pytestmark = [pytest.mark.worker, pytest.mark.slow, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]


def test_tiny_run_counts_flops_like_the_analytic_estimate_and_reports_settings(tmp_path):
    out = tmp_path / "worker_latency.json"
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "worker_latency.py"),
        "--device=cpu",
        "--size=32",
        "--steps=1",
        "--batches=1,2",
        "--repeat=1",
        "--threads=1",
        "--attention=_native_flash",
        "--cuda-graphs",
        "--no-batch-n",
        f"--out={out}",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        command, check=False, capture_output=True, text=True, timeout=280, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["model"] == "tiny" and result["device"] == "cpu" and result["steps"] == 1
    assert result["settings"] == {
        "attention_backend": "_native_flash",
        "compile": True,
        "compile_mode": "default",
        "cuda_graphs": True,
        "batch_n": False,
    }
    effect = result["in_effect"]
    assert effect["attention_backend"] == "native" and effect["compile"] is None
    assert effect["batch_n"] is False and len(effect["notes"]) == 2
    assert "in effect:" in done.stdout
    rows = {row["n"]: row for row in result["rows"]}
    assert set(rows) == {1, 2}
    for n, row in rows.items():
        counted, analytic = row["counted_gflop"], row["analytic_gflop"]
        for part in ("transformer", "text_encoder", "vae_decode"):
            assert counted[part] > 0, part  # attention and every module counted
            assert abs(counted[part] - analytic[part]) <= 0.01 * analytic[part], (part, row)
        assert row["seconds"] > 0 and row["seconds_per_image"] == pytest.approx(
            row["seconds"] / n, abs=0.002
        )
    # the text encoder runs once per request; the transformer and the VAE once per image
    two, one = rows[2]["counted_gflop"], rows[1]["counted_gflop"]
    assert two["text_encoder"] == pytest.approx(one["text_encoder"])
    assert two["transformer"] == pytest.approx(2 * one["transformer"], rel=1e-3)
    assert two["vae_decode"] == pytest.approx(2 * one["vae_decode"], rel=1e-3)


def test_flops_only_gives_the_full_models_cost_without_weights(tmp_path, reference_dir):
    out = tmp_path / "flops.json"
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "worker_latency.py"),
        "--flops-only",
        "--batches=1,4",
        f"--out={out}",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "ZG_REFERENCE_DIR": str(reference_dir)}
    done = subprocess.run(
        command, check=False, capture_output=True, text=True, timeout=280, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(out.read_text())
    assert result["size"] == 1024 and result["steps"] == 8 and result["peak_tflops"] == 989.0
    params = result["parameters"]  # the reference README: about 6 B + 4 B parameters
    assert 6.0e9 < params["transformer"] < 6.3e9 and 3.9e9 < params["text_encoder"] < 4.1e9
    one, four = result["rows"]
    # 2 x 6e9 x ~4100 tokens per pass, 8 passes, plus attention: 4.5e14 FLOP per image
    assert 440 < one["tflop_per_image"] < 480
    assert one["analytic_tflop"]["transformer"] > 0.95 * one["tflop_per_image"]
    assert four["tflop_per_image"] < one["tflop_per_image"]  # the prompt is encoded once
    assert 0.44 < one["floor_seconds_per_image"] < 0.49
