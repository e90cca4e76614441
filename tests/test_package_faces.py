"""Package faces stay light and complete: ``import broker.errors`` loads no server, database or
scheduler library; every lazily exported name resolves; the package ships ``py.typed``."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "broker"
HEAVY = (
    "httpx",
    "web3",
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "apscheduler",
    "torch",
    "diffusers",
)
#: Every package of ``broker`` with a face (an ``__init__`` that exports names).
FACES = (
    "broker.asgi",
    "broker.attestation",
    "broker.config",
    "broker.devnet",
    "broker.funding",
    "broker.inference",
    "broker.ledger",
    "broker.provider",
    "broker.proxy",
    "broker.ui",
    "broker.worker",
)


def _loaded_after(statement: str) -> list[str]:
    code = f"import sys; {statement}; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(SRC.parent)},
        timeout=120,
    )
    return [m for m in out.stdout.strip().split(",") if m]


@pytest.mark.parametrize(
    "statement",
    [
        "import broker.errors",
        "import broker",
        "from broker.errors import BrokerError, ProxyError, FundingError, ProviderError",
        "import " + ", ".join(FACES),
    ],
)
def test_faces_do_not_load_servers_databases_or_schedulers(statement):
    assert _loaded_after(statement) == []


def test_the_heavy_parts_still_load_on_use():
    """The check above can fail: touching a server name does load its libraries."""
    assert "fastapi" in _loaded_after("from broker.proxy import create_app")
    assert "httpx" in _loaded_after("from broker.attestation import fetch_quote_report")


@pytest.mark.parametrize("package", FACES)
def test_every_exported_name_resolves(package):
    module = importlib.import_module(package)
    for name in module.__all__:
        assert getattr(module, name) is not None, f"{package}.{name}"
    if module.__getattr__.__module__ == "broker._lazy":  # lazy_exports faces list them too
        assert set(module.__all__) <= set(dir(module))
    with pytest.raises(AttributeError):
        module.no_such_name  # noqa: B018


def test_py_typed_ships_in_the_wheel(tmp_path):
    assert (SRC / "py.typed").is_file()
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "broker" in config["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    wheel_builder = pytest.importorskip("hatchling.builders.wheel")
    wheel = wheel_builder.WheelBuilder(str(ROOT)).build_standard(str(tmp_path))
    assert "broker/py.typed" in zipfile.ZipFile(wheel).namelist()
