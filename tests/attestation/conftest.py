"""Fixtures of the attestation tests: a synthetic TDX attestation (built once per module) and the
real near/mpc sample (skipped when ../shared is absent)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from attestation_synth import SyntheticTdx


@pytest.fixture(scope="session")
def synth() -> SyntheticTdx:
    """One synthetic PKI + attestation key for the session (key generation is the slow part)."""
    return SyntheticTdx()


@pytest.fixture(scope="session")
def near_sample(attestation_samples_dir: Path) -> dict:
    """The near/mpc sample: ``quote`` (bytes), ``tcb_info`` (dict), ``collateral`` (JSON text), and
    ``body`` (a 0G-shaped ``/v1/quote`` dict built from them)."""
    quote = bytes(json.loads((attestation_samples_dir / "near-mpc-quote.json").read_text()))
    tcb_info = json.loads((attestation_samples_dir / "near-mpc-tcb_info.json").read_text())
    collateral = (attestation_samples_dir / "near-mpc-collateral.json").read_text()
    body = {
        "quote": quote.hex(),
        "event_log": json.dumps(tcb_info["event_log"]),
        "tcb_info": json.dumps(tcb_info, indent=2),
    }
    return {"quote": quote, "tcb_info": tcb_info, "collateral": collateral, "body": body}
