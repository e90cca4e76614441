"""CONTRIBUTING.md states the layers as the import-linter contract does, and every CLI module is
mounted the one way it describes (``AREA_MODULES``)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_contributing_layers_match_the_contract():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (layers,) = [
        c["layers"] for c in config["tool"]["importlinter"]["contracts"] if c["type"] == "layers"
    ]
    contract = [{p.strip() for p in layer.split(":")} for layer in layers]
    text = (ROOT / "CONTRIBUTING.md").read_text()
    section = text.split("## Layers", 1)[1].split("\n## ", 1)[0]
    documented = [
        set(re.findall(r"`(broker[\w.]*)`", row))
        for row in re.findall(r"^\| \d+ \| (.*) \|$", section, flags=re.MULTILINE)
    ]
    assert documented == contract


def test_every_cli_module_is_mounted_through_area_modules():
    from broker.cli.main import AREA_MODULES

    mounted = {module for _, module in AREA_MODULES}
    cli = ROOT / "broker" / "cli"
    commands = {
        f"broker.cli.{p.stem}"
        for p in cli.glob("*.py")
        if re.search(r"^(def register\(app|app = typer\.Typer)", p.read_text(), re.MULTILINE)
        and p.stem != "main"
    }
    assert commands == mounted
    main = (cli / "main.py").read_text()
    assert not re.search(r"^\w+\.register\(app\)", main, re.MULTILINE), "use AREA_MODULES"
