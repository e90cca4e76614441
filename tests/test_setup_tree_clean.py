"""The quick start leaves a fresh clone clean: ``scripts/setup`` installs the npm tools with
``npm ci`` (never rewrites the lock), and the committed lock already lists every platform's
optional anvil binary package, so even ``npm install`` has nothing to add to it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "tools"


def _lock() -> dict:
    return json.loads((TOOLS / "package-lock.json").read_text())


def test_lock_lists_every_optional_dependency():
    packages = _lock()["packages"]
    missing = [
        f"{path} -> {dep}"
        for path, meta in packages.items()
        for dep in meta.get("optionalDependencies", {})
        if f"node_modules/{dep}" not in packages
    ]
    assert missing == []
    anvils = [p for p in packages if p.startswith("node_modules/@foundry-rs/anvil-")]
    assert len(anvils) == 5  # linux/darwin x64/arm64 and win32


def test_lock_matches_package_json():
    wanted = json.loads((TOOLS / "package.json").read_text())["dependencies"]
    packages = _lock()["packages"]
    assert packages[""]["dependencies"] == wanted
    for name, version in wanted.items():
        assert packages[f"node_modules/{name}"]["version"] == version


def test_setup_installs_with_npm_ci():
    text = (ROOT / "scripts" / "setup").read_text()
    commands = [
        line.strip()
        for line in text.splitlines()
        if re.search(r"\bnpm (ci|install|i|update)\b", line)
        and not line.strip().startswith(("#", "echo"))
    ]
    assert commands and all("npm ci" in c for c in commands), commands


@pytest.mark.timeout(300)
def test_npm_ci_twice_keeps_the_lock(tmp_path):
    """The npm step of setup, twice, in a temporary copy: the lock is byte-identical afterwards.
    Needs npm and its cache (or the registry); skipped when npm cannot install."""
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed")
    for name in ("package.json", "package-lock.json"):
        shutil.copy(TOOLS / name, tmp_path / name)
    before = (tmp_path / "package-lock.json").read_bytes()
    for _ in range(2):
        run = subprocess.run(
            ["npm", "ci", "--prefer-offline", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )
        if run.returncode != 0:
            pytest.skip(f"npm ci could not install here: {run.stderr.strip()[-200:]}")
    assert (tmp_path / "package-lock.json").read_bytes() == before
    assert (tmp_path / "node_modules" / ".bin" / "anvil").exists()
