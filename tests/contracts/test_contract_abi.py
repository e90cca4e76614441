"""Our ABIs against the deployed 0G ABIs (contracts.md A4.1 item 1) and the build artifacts."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from eth_utils import keccak

from broker.chain.artifacts import ARTIFACT_NAMES, ArtifactNotFoundError, load_abi, load_artifact

REPO = Path(__file__).resolve().parents[2]


def _canonical(param: dict) -> str:
    if param["type"].startswith("tuple"):
        return "(" + ",".join(_canonical(c) for c in param["components"]) + ")" + param["type"][5:]
    return param["type"]


def _shape(param: dict) -> dict:
    out = {"type": param["type"], "name": param.get("name", "")}
    if "indexed" in param:
        out["indexed"] = param["indexed"]
    if "components" in param:
        out["components"] = [_shape(c) for c in param["components"]]
    return out


def _entries(abi: list[dict]) -> dict[tuple[str, str], dict]:
    table = {}
    for e in abi:
        if e["type"] in ("constructor", "receive", "fallback"):
            table[(e["type"], "")] = {"stateMutability": e.get("stateMutability")}
            continue
        sig = f"{e['name']}({','.join(_canonical(i) for i in e['inputs'])})"
        table[(e["type"], sig)] = {
            "selector": keccak(text=sig)[: 4 if e["type"] != "event" else 32].hex(),
            "inputs": [_shape(i) for i in e["inputs"]],
            "outputs": [_shape(o) for o in e.get("outputs", [])],
            "stateMutability": e.get("stateMutability"),
            "anonymous": e.get("anonymous"),
        }
    return table


@pytest.mark.parametrize("name", ["LedgerManager", "InferenceServing"])
def test_abi_matches_reference(reference_dir: Path, name: str) -> None:
    ref = json.loads((reference_dir / "abi" / f"{name}.json").read_text())
    ref = ref["abi"] if isinstance(ref, dict) else ref
    want, got = _entries(ref), _entries(load_abi(name))
    missing = sorted(set(want) - set(got))
    assert not missing, f"{name} lacks {missing}"
    different = {k: (want[k], got[k]) for k in want if want[k] != got[k]}
    assert not different, f"{name} differs: {different}"
    extra = sorted(k for k in set(got) - set(want))
    assert not extra, f"{name} has entries the deployed contract lacks: {extra}"


def test_known_selectors_and_interface_id() -> None:
    names = {e["name"] for e in load_abi("InferenceServing") if e["type"] == "function"}
    iserving = [
        "accountExists(address,address)",
        "getPendingRefund(address,address)",
        "addAccount(address,address,string)",
        "depositFund(address,address,uint256)",
        "requestRefundAll(address,address)",
        "processRefund(address,address)",
        "deleteAccount(address,address)",
    ]
    assert {s.split("(")[0] for s in iserving} <= names
    interface_id = 0
    for sig in iserving:
        interface_id ^= int.from_bytes(keccak(text=sig)[:4], "big")
    assert interface_id == 0x160841B1
    assert (
        keccak(text="settleFeesWithTEE((address,address,uint256,bytes32,uint256,bytes)[])")[
            :4
        ].hex()
        == "8be74119"
    )


def test_artifacts_shape_and_size() -> None:
    for name in ARTIFACT_NAMES:
        art = load_artifact(name)
        assert art["contractName"] == name
        assert art["bytecode"].startswith("0x") and len(art["bytecode"]) > 2
        runtime = (len(art["deployedBytecode"]) - 2) // 2
        assert 0 < runtime < 24576
        assert art["compiler"]["settings"]["evmVersion"] == "istanbul"
    with pytest.raises(ArtifactNotFoundError):
        load_artifact("FineTuningServing")


@pytest.mark.timeout(180)
def test_committed_artifacts_are_fresh() -> None:
    if shutil.which("node") is None or not (REPO / "tools" / "node_modules" / "solc").is_dir():
        pytest.skip("node or tools/node_modules/solc missing")
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "compile_contracts.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
