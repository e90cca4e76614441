"""The README as a contract: its fenced ``bash`` and ``python`` blocks run, in order, against a real
devnet in a temporary ``ZG_HOME``, through the real ``0g-broker`` entry point and the real library.

A block preceded by ``<!-- readme-test: skip ... -->`` is not run (only the quick start's ``make``
block, which would run this suite). Fixed substitutions, applied to every block:

* ``scripts/setup`` and ``source .venv/bin/activate`` are not run: the suite already runs inside the
  set-up environment (``tests/test_setup_tree_clean.py`` covers setup), and ``0g-broker`` comes from
  the interpreter's ``bin`` folder put first on ``PATH``;
* the devnet's port 8545 and serve's port 3000 are replaced by free ports, and ``devnet up`` gets
  ``--port <free>`` (tests never use fixed ports);
* a ``0g-broker ... serve ...`` line (it runs until stopped) is started in the background; the
  block continues once ``/health`` answers, and it is stopped at the end;
* everything ends with ``0g-broker devnet down``.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from broker.ports import free_port

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
BIN = Path(sys.executable).parent
SKIP = re.compile(r"<!--\s*readme-test:\s*skip\b")
FENCE = re.compile(r"^```(\w*)\s*$")


def readme_blocks(text: str) -> list[tuple[str, str, bool]]:
    """``(language, code, skipped)`` of every fenced block, in order; ``skipped`` when the
    closest non-blank line before the fence is a ``readme-test: skip`` comment."""
    blocks: list[tuple[str, str, bool]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        j = i - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        skipped = j >= 0 and bool(SKIP.search(lines[j]))
        end = i + 1
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        blocks.append((m.group(1), "\n".join(lines[i + 1 : end]), skipped))
        i = end + 1
    return blocks


def test_readme_blocks_are_found():
    blocks = readme_blocks(README.read_text())
    langs = [lang for lang, _, skipped in blocks if not skipped]
    assert langs.count("bash") >= 3 and langs.count("python") >= 2
    assert sum(skipped for *_, skipped in blocks) == 1  # skips stay rare


def test_readme_states_the_tiny_models_sizes():
    from broker.worker.pipelines.loader import limits_for

    lim = limits_for("tiny")
    text = " ".join(README.read_text().split())
    assert f"{lim.default_size[0]}x{lim.default_size[1]} for the tiny model" in text
    assert f"from {lim.min_side} to {lim.max_side} px in steps of {lim.size_multiple}" in text


class _Runner:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.devnet_port = free_port()
        self.serve_port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("ZG_")}
        env.update(
            {
                "ZG_HOME": str(tmp / "home"),
                "PATH": f"{BIN}{os.pathsep}{env['PATH']}",
                "PYTHONUNBUFFERED": "1",
            }
        )
        self.env = env
        self.background: list[subprocess.Popen] = []

    def substitute(self, code: str) -> str:
        code = code.replace("8545", str(self.devnet_port)).replace("3000", str(self.serve_port))
        return re.sub(
            r"(0g-broker devnet up\b)(?![^\n#]*--port)", rf"\1 --port {self.devnet_port}", code
        )

    def bash(self, code: str) -> None:
        for raw in self.substitute(code).splitlines():
            line = raw.split(" #", 1)[0].strip()
            if not line or line.startswith("#"):
                continue
            if line in ("scripts/setup", "source .venv/bin/activate"):
                continue
            if re.search(r"^0g-broker\b.*\bserve\b", line):
                self._start_serve(line)
                continue
            run = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", line],
                cwd=self.tmp,
                env=self.env,
                capture_output=True,
                text=True,
                timeout=400,
                check=False,
            )
            assert run.returncode == 0, (line, run.stdout[-2000:], run.stderr[-2000:])

    def _start_serve(self, line: str) -> None:
        log = open(self.tmp / "serve.log", "w")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            shlex.split(line),
            cwd=self.tmp,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.background.append(proc)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert proc.poll() is None, (self.tmp / "serve.log").read_text()[-3000:]
            try:
                if httpx.get(f"http://127.0.0.1:{self.serve_port}/health", timeout=2).is_success:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise AssertionError(
            "serve did not answer /health: " + (self.tmp / "serve.log").read_text()[-3000:]
        )

    def python(self, code: str) -> str:
        run = subprocess.run(
            [sys.executable, "-c", self.substitute(code)],
            cwd=self.tmp,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=400,
            check=False,
        )
        assert run.returncode == 0, (code[:200], run.stdout[-2000:], run.stderr[-3000:])
        return run.stdout + run.stderr

    def close(self) -> None:
        for proc in self.background:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)
        subprocess.run(
            [str(BIN / "0g-broker"), "devnet", "down"],
            env=self.env,
            timeout=120,
            capture_output=True,
            check=False,
        )


@pytest.mark.timeout(900)
def test_readme_runs_against_a_devnet(tmp_path):
    runner = _Runner(tmp_path)
    outputs = []
    try:
        for lang, code, skipped in readme_blocks(README.read_text()):
            if skipped:
                continue
            if lang == "bash":
                runner.bash(code)
            elif lang == "python":
                outputs.append(runner.python(code))
    finally:
        runner.close()
    library, proxy = outputs[0], outputs[1]
    assert "no service is registered at 0x1212" in library  # the typo example refused
    assert "using devnet dev account" in library  # the library's devnet key notice
    fee, verified, valid = proxy.split()[:3]
    assert int(fee) > 0 and verified == "true" and valid == "True"
