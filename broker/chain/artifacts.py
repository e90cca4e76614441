"""Compiled contract artifacts (ABI and bytecode) of our Solidity contracts.

The artifacts are the JSON files written by ``scripts/compile_contracts.py`` into
``contracts_abi/``: ``LedgerManager``, ``InferenceServing``, ``UpgradeableBeacon``, ``BeaconProxy``.
In an installed wheel they live in the package as ``broker/_contracts_abi`` (force-included by
pyproject); in a source checkout they are read from ``<repo>/contracts_abi``.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from broker._exceptions import ConfigError

__all__ = ["ARTIFACT_NAMES", "ArtifactNotFoundError", "artifacts_dir", "load_abi", "load_artifact"]

#: The deployable contracts shipped as artifacts.
ARTIFACT_NAMES = ("LedgerManager", "InferenceServing", "UpgradeableBeacon", "BeaconProxy")


class ArtifactNotFoundError(ConfigError):
    """No artifact of that name exists (neither in the package nor in the source checkout)."""


def _candidates(name: str) -> list[Any]:
    found: list[Any] = []
    try:
        packaged = resources.files("broker").joinpath("_contracts_abi", f"{name}.json")
        found.append(packaged)
    except (ModuleNotFoundError, FileNotFoundError):  # pragma: no cover - broker is importable here
        pass
    found.append(Path(__file__).resolve().parents[2] / "contracts_abi" / f"{name}.json")
    return found


def artifacts_dir() -> Path:
    """The directory the artifacts are read from (package copy first, else
    ``<repo>/contracts_abi``).

    Raises:
        ArtifactNotFoundError: neither location holds ``LedgerManager.json``.
    """
    for candidate in _candidates("LedgerManager"):
        if candidate.is_file():
            return Path(str(candidate)).parent
    raise ArtifactNotFoundError("contract artifacts not found; run scripts/compile_contracts.py")


@cache
def load_artifact(name: str) -> dict[str, Any]:
    """Load one artifact.

    Args:
        name: contract name, one of :data:`ARTIFACT_NAMES` (e.g. ``"LedgerManager"``).

    Returns:
        ``{"contractName", "abi", "bytecode", "deployedBytecode", "sourceHash", "compiler", ...}``;
        bytecodes are ``0x``-prefixed hex strings. Cached: treat it as read-only.

    Raises:
        ArtifactNotFoundError: unknown name or missing file.
    """
    if name not in ARTIFACT_NAMES:
        raise ArtifactNotFoundError(
            f"unknown contract artifact {name!r}; known: {', '.join(ARTIFACT_NAMES)}"
        )
    for candidate in _candidates(name):
        if candidate.is_file():
            return json.loads(candidate.read_text(encoding="utf-8"))
    raise ArtifactNotFoundError(f"artifact {name}.json not found; run scripts/compile_contracts.py")


def load_abi(name: str) -> list[dict[str, Any]]:
    """The ABI (list of JSON ABI entries) of contract ``name``; see :func:`load_artifact`."""
    return load_artifact(name)["abi"]
