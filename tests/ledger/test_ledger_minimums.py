"""The ledger broker's client-side minimums are the deployed contract's constants
(contracts.md A2.1): mainnet 3 0G / 1 0G, the Galileo testnet contract 0.1 0G / 0.01 0G. A checks
hard-coded to the mainnet values would refuse operations the testnet contract (and the SDK)
accept."""

from __future__ import annotations

import pytest
from eth_account import Account

from broker.chain.artifacts import load_artifact
from broker.chain.contracts import LedgerManagerContract
from broker.ledger.broker import LedgerBroker
from broker.ledger.errors import MinimumBalanceError

OG = 10**18


def _push8(value: int) -> bytes:
    return bytes([0x67]) + value.to_bytes(8, "big")  # PUSH8 <value>


@pytest.fixture()
def testnet_ledger(funded_broker):
    """A LedgerManager whose code is ours with the Galileo minimums (0.1 0G / 0.01 0G), installed
    with ``anvil_setCode`` at a fresh address, wrapped in a LedgerBroker for the funded account."""
    b = funded_broker
    code = bytes.fromhex(load_artifact("LedgerManager")["deployedBytecode"][2:])
    assert code.count(_push8(3 * OG)) and code.count(_push8(OG))
    code = code.replace(_push8(3 * OG), _push8(OG // 10)).replace(_push8(OG), _push8(OG // 100))
    address = Account.create().address
    b.w3.provider.make_request("anvil_setCode", [address, "0x" + code.hex()])
    contract = LedgerManagerContract(b.w3, address, b.sender)
    return LedgerBroker(contract, b.ledger.inference_contract, dict(b.ledger.service_names))


def test_mainnet_minimums_read_from_the_devnet_contract(funded_broker):
    ledger = funded_broker.ledger
    assert ledger.min_account_balance == 3 * OG
    assert ledger.min_transfer_amount == OG
    with pytest.raises(MinimumBalanceError, match="ledger is 3 0G, but got 2.5 0G"):
        ledger.add_ledger("2.5")


def test_testnet_minimums_are_honoured(testnet_ledger):
    ledger = testnet_ledger
    assert (ledger.min_account_balance, ledger.min_transfer_amount) == (OG // 10, OG // 100)
    with pytest.raises(MinimumBalanceError, match="is 0.1 0G, but got 0.05 0G"):
        ledger.add_ledger("0.05")
    ledger.add_ledger("0.5")  # refused locally before the fix ("at least 3 0G")
    assert ledger.get_ledger().total_balance == OG // 2
    ledger.refund("0.3")  # leaves 0.2 0G ≥ 0.1: the contract accepts it, so must we
    assert ledger.get_ledger().available_balance == OG // 5
    with pytest.raises(MinimumBalanceError, match="at least 0.1 0G"):
        ledger.refund("0.15")  # would leave 0.05 0G
