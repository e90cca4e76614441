"""The OFFICIAL TS SDK (npm ``@0gfoundation/0g-compute-ts-sdk`` 0.9.0, pinned in ``js/package.json``
and ``js/package-lock.json``) uses our devnet provider as it would a mainnet one: ``addLedger``,
``acknowledgeProviderSigner``, ``getServiceMetadata``, ``getRequestHeaders``, an image generation
through the gateway, and ``processResponse`` → true (``user-broker.md`` 1.3, 6, 7;
``provider-gateway.md`` B12).

``npm ci`` runs in ``tests/sdk/js`` when its ``node_modules`` is missing; the test skips (with the
reason) when node/npm or the npm registry is unavailable.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from broker.chain.connection import connect
from broker.chain.contracts import LedgerManagerContract
from broker.devnet import fund_new_account
from broker.stacks import start_provider_stack

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

JS = Path(__file__).parent / "js"
ZG = 10**18
PRICE = 10**15


@pytest.fixture(scope="module")
def sdk_dir() -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node/npm not installed: cannot run the official TS SDK")
    if not (JS / "node_modules" / "@0gfoundation" / "0g-compute-ts-sdk").is_dir():
        try:
            done = subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund"],
                cwd=JS,
                capture_output=True,
                text=True,
                timeout=420,
                check=False,
            )
        except subprocess.TimeoutExpired:
            pytest.skip("npm ci timed out (npm registry unreachable?)")
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            pytest.skip(f"npm ci failed (registry unavailable?): {' | '.join(tail)}")
    return JS


def test_official_sdk_uses_our_provider(sdk_dir, devnet, tmp_path):
    provider = fund_new_account(devnet, 1000 * ZG)
    user = fund_new_account(devnet, 100 * ZG)
    with start_provider_stack(
        devnet,
        provider_key="0x" + bytes(provider.key).hex(),
        price_per_image=PRICE,
        home=tmp_path / "stack",
    ) as stack:
        env = {**os.environ, "ZG_SDK_USER_KEY": "0x" + bytes(user.key).hex()}
        done = subprocess.run(
            ["node", "sdk_check.mjs", devnet.rpc_url, stack.provider_address],
            cwd=sdk_dir,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
        assert done.returncode == 0 and lines, done.stderr[-2000:]
        result = json.loads(lines[-1])
        assert result.get("error") is None, result
        assert result["endpoint"] == stack.gateway_url + "/v1/proxy"
        assert result["model"] == "z-image"  # the devnet's on-chain name for the tiny model
        assert result["status"] == 200 and result["images"] == 1
        assert result["processResponse"] is True and result["ok"] is True
        # the gateway billed the SDK user's image (n × outputPrice, B9) and settles it (possibly
        # already by its own scheduler, triggered when the user's balance runs low)
        gw = stack.gateway
        assert gw.ledger.unsettled_fee(user.address) in (0, PRICE)
        gw.settler.settle_once()
        assert gw.ledger.unsettled_fee(user.address) == 0
        ledger = LedgerManagerContract(connect(devnet.rpc_url), devnet.ledger_address)
        assert ledger.get_ledger(user.address).total_balance == 3 * ZG - PRICE  # addLedger(3)
