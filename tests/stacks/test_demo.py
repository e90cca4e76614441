"""The main job in one command: ``0g-broker demo`` as a user runs it (a subprocess with its own
ZG_HOME), with the default size. It must write a real PNG, report the payment and a verified TEE
signature, and leave no process behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

pytestmark = [pytest.mark.slow, pytest.mark.worker, pytest.mark.timeout(600)]


def _anvil_pids(zg_home: Path) -> set[int]:
    """anvil processes started by this test's demo: their environment carries its ZG_HOME (other
    test runs on the machine start anvils too)."""
    mark = f"ZG_HOME={zg_home}".encode()
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmd = (entry / "cmdline").read_bytes()
                if b"anvil" not in cmd.split(b"\0")[0]:
                    continue
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if mark in environ:
                pids.add(int(entry.name))
    return pids


def test_demo_command_end_to_end(tmp_path):
    before = _anvil_pids(tmp_path / "home")
    out = tmp_path / "fox.png"
    env = {**os.environ, "ZG_HOME": str(tmp_path / "home")}
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "broker.cli.main",
            "demo",
            "--prompt",
            "a red fox",
            "--out",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    with Image.open(out) as image:
        assert image.format == "PNG" and image.size == (
            512,
            512,
        )  # serve's (the SDK's) default size
    text = " ".join((run.stdout + run.stderr).split())
    assert "paid 0.001 0G" in text and "response signature verified: true" in text
    assert "stopped everything the demo started" in text
    deadline = time.monotonic() + 10
    while _anvil_pids(tmp_path / "home") - before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not (_anvil_pids(tmp_path / "home") - before), "the demo left an anvil process behind"
