"""``benchmarks/proxy_overhead.py`` in a tiny run (no TS proxy): it starts its whole stack (devnet
behind the counting relay, the gateway, both ``serve`` modes and the bare relay of ``--floor``),
drives every target with the aiohttp load generator, and writes a JSON report whose figures are
usable: every target answered without error, the CPU readings are there, and ``serve`` made no
chain call per request. Speed itself is not asserted here (see ``benchmarks/README.md``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

ROOT = Path(__file__).resolve().parents[2]


def test_tiny_run_reports_every_target_with_cpu_and_no_chain_calls(tmp_path):
    out = tmp_path / "proxy_overhead.json"
    command = [
        sys.executable,
        str(ROOT / "benchmarks" / "proxy_overhead.py"),
        "--no-ts",
        "--floor",
        "--levels=1,4",
        "--rounds=1",
        "--requests=12",
        "--seconds=5",
        "--stream-requests=3",
        f"--out={out}",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        command, check=False, capture_output=True, text=True, timeout=360, env=env
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    printed = done.stdout[-4000:]  # the benchmark's own table, shown with any failure below
    assert report["client"] == "aiohttp"
    assert report["first_errors"] == {}, printed
    assert [row["clients"] for row in report["results"]] == [1, 4]
    for row in report["results"]:
        targets = row["targets"]
        assert set(targets) == {"direct", "serve-warn", "serve-off", "relay"}
        for name, figures in targets.items():
            assert figures["errors"] == 0, (name, printed)
            assert figures["requests"] == 12, (name, printed)
            # /proc counts CPU in 10 ms ticks: a 12-request slice may read 0
            assert figures["gateway_cpu_ms_per_request"] >= 0, name
            assert figures["load_generator_cpu_ms_per_request"] is not None, name
            if name != "direct":
                assert figures["proxy_cpu_ms_per_request"] is not None, name
                assert "added_p50_ms" in figures, name
        for mode in ("serve-warn", "serve-off"):  # the funding check at most, never per request
            assert targets[mode]["chain_rpcs_per_request"] < 0.5, mode
    for name in ("direct", "serve-warn", "serve-off", "relay"):
        assert report["streaming"][name]["requests"] == 3, (name, printed)
    assert "TS proxy not run: --no-ts" in done.stdout
