#!/usr/bin/env python3
"""Build the Solidity contracts in ``contracts/`` offline; write artifacts in ``contracts_abi/``.

Usage::

    .venv/bin/python scripts/compile_contracts.py          # (re)write contracts_abi/*.json
    .venv/bin/python scripts/compile_contracts.py --check  # exit 1: committed artifacts stale

The compiler is the pinned solcjs in ``tools/node_modules/solc`` driven by
``scripts/solc_compile.mjs`` (standard-JSON through the JS API; OpenZeppelin 4.8.3 imports
resolved from ``tools/node_modules``). Settings: optimizer on (200 runs), legacy codegen (no
``viaIR`` needed), ``evmVersion`` istanbul (no PUSH0, like the deployed contracts, contracts.md A1).
Output is deterministic: one pretty JSON file per deployable contract,
``{"contractName", "abi", "bytecode", "deployedBytecode", "sourceHash", "compiler"}``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["ARTIFACTS", "build_input", "compile_artifacts", "main"]

REPO = Path(__file__).resolve().parents[1]
CONTRACTS_DIR = REPO / "contracts"
OUT_DIR = REPO / "contracts_abi"
NODE_SCRIPT = REPO / "scripts" / "solc_compile.mjs"
MAX_RUNTIME_SIZE = 24576

#: artifact name -> source unit that defines it
ARTIFACTS: dict[str, str] = {
    "LedgerManager": "contracts/ledger/LedgerManager.sol",
    "InferenceServing": "contracts/inference/InferenceServing.sol",
    "UpgradeableBeacon": "@openzeppelin/contracts/proxy/beacon/UpgradeableBeacon.sol",
    "BeaconProxy": "@openzeppelin/contracts/proxy/beacon/BeaconProxy.sol",
}

SETTINGS = {
    "optimizer": {"enabled": True, "runs": 200},
    "viaIR": False,
    "evmVersion": "istanbul",
    "metadata": {"bytecodeHash": "ipfs"},
}


class CompileError(Exception):
    """solc reported an error, or node is missing."""


def build_input() -> dict:
    """The solc standard-JSON input: every ``contracts/**/*.sol`` (sorted) plus :data:`SETTINGS`."""
    sources = {
        path.relative_to(REPO).as_posix(): {"content": path.read_text(encoding="utf-8")}
        for path in sorted(CONTRACTS_DIR.rglob("*.sol"))
    }
    selection = {
        unit: {name: ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}
        for name, unit in ARTIFACTS.items()
    }
    return {
        "language": "Solidity",
        "sources": sources,
        "settings": {**SETTINGS, "outputSelection": selection},
    }


def _run_solc(std_input: dict) -> dict:
    node = shutil.which("node")
    if node is None:
        raise CompileError("node is not on PATH (needed to run solcjs)")
    proc = subprocess.run(
        [node, str(NODE_SCRIPT)],
        input=json.dumps(std_input, sort_keys=True).encode(),
        capture_output=True,
        cwd=REPO,
        check=False,
    )
    if not proc.stdout:
        raise CompileError(
            f"solc_compile.mjs failed: {proc.stderr.decode(errors='replace').strip()}"
        )
    output = json.loads(proc.stdout)
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors or proc.returncode != 0:
        msgs = "\n".join(e.get("formattedMessage", e.get("message", "")) for e in errors)
        raise CompileError(f"solc reported errors:\n{msgs or proc.stderr.decode(errors='replace')}")
    return output


def compile_artifacts() -> dict[str, str]:
    """Compile and return ``{file name: pretty JSON text}`` for every artifact of :data:`ARTIFACTS`.

    Raises:
        CompileError: node missing, solc error, or a runtime bytecode over 24 576 bytes.
    """
    std_input = build_input()
    source_hash = "0x" + hashlib.sha256(json.dumps(std_input, sort_keys=True).encode()).hexdigest()
    output = _run_solc(std_input)
    compiler = {
        "name": "solc",
        "version": output.get("compilerVersion", ""),
        "settings": SETTINGS,
    }
    files: dict[str, str] = {}
    for name, unit in ARTIFACTS.items():
        contract = output["contracts"][unit][name]
        deployed = contract["evm"]["deployedBytecode"]["object"]
        if len(deployed) // 2 > MAX_RUNTIME_SIZE:
            raise CompileError(
                f"{name}: runtime size {len(deployed) // 2} > {MAX_RUNTIME_SIZE} bytes"
            )
        artifact = {
            "contractName": name,
            "sourceName": unit,
            "abi": contract["abi"],
            "bytecode": "0x" + contract["evm"]["bytecode"]["object"],
            "deployedBytecode": "0x" + deployed,
            "sourceHash": source_hash,
            "compiler": compiler,
        }
        files[f"{name}.json"] = json.dumps(artifact, indent=2, sort_keys=False) + "\n"
    return files


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status (0 ok, 1 stale artifacts or compile failure)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when contracts_abi/ is stale")
    args = parser.parse_args(argv)
    try:
        files = compile_artifacts()
    except CompileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.check:
        stale = [
            name
            for name, text in files.items()
            if not (OUT_DIR / name).is_file()
            or (OUT_DIR / name).read_text(encoding="utf-8") != text
        ]
        if stale:
            print(
                f"stale artifacts: {', '.join(stale)}; run scripts/compile_contracts.py",
                file=sys.stderr,
            )
            return 1
        print("contracts_abi/ is up to date", file=sys.stderr)
        return 0
    OUT_DIR.mkdir(exist_ok=True)
    for name, text in files.items():
        (OUT_DIR / name).write_text(text, encoding="utf-8")
    gitkeep = OUT_DIR / ".gitkeep"
    if gitkeep.exists():
        gitkeep.unlink()
    for name, text in files.items():
        size = (len(json.loads(text)["deployedBytecode"]) - 2) // 2
        print(f"wrote contracts_abi/{name} (runtime {size} bytes)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
