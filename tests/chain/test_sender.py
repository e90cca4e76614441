"""TransactionSender against the real devnet: estimate-first decoding, mined reverts, nonce lane
under concurrency, bump-and-replace, gas caps."""

from __future__ import annotations

import logging
import threading
import time
from decimal import Decimal

import pytest
from devnet_helpers import run_concurrently
from eth_account import Account
from web3 import Web3

from broker._exceptions import TransactionError
from broker.chain import errors as ce
from broker.chain.contracts import LedgerManagerContract
from broker.chain.sender import TransactionSender

GWEI = 10**9


@pytest.fixture()
def w3(devnet):
    return Web3(Web3.HTTPProvider(devnet.rpc_url))


@pytest.fixture()
def no_automine(w3, fresh_account):
    """Turn automine off for the test (after ``fresh_account`` is funded); mine what is pending
    and turn it back on afterwards."""
    w3.provider.make_request("evm_setAutomine", [False])
    try:
        yield w3
    finally:
        w3.provider.make_request("evm_mine", [])
        w3.provider.make_request("evm_setAutomine", [True])


def _nonce(w3, address):
    return w3.eth.get_transaction_count(address, "pending")


def test_estimate_revert_is_typed_and_nothing_sent(w3, devnet, fresh_account):
    sender = TransactionSender(w3, fresh_account)
    ledger = LedgerManagerContract(w3, devnet.ledger_address, sender)
    before = _nonce(w3, fresh_account.address)
    with pytest.raises(ce.LedgerNotExistsError) as info:
        sender.send(ledger.contract.functions.refund(1))
    assert info.value.error_args == {"user": fresh_account.address}
    assert info.value.error_name == "LedgerNotExists" and info.value.selector == "0x7d2d536b"
    assert _nonce(w3, fresh_account.address) == before


def test_mined_revert_is_replayed_and_decoded(w3, devnet, fresh_account):
    sender = TransactionSender(w3, fresh_account)
    ledger = LedgerManagerContract(w3, devnet.ledger_address, sender)
    data = ledger.contract.functions.addLedger("")._encode_transaction_data()
    before = _nonce(w3, fresh_account.address)
    with pytest.raises(ce.MinimumDepositRequiredError) as info:
        # explicit gas skips the estimate: the transaction is mined with status 0
        sender.send_raw({"to": devnet.ledger_address, "data": data, "value": 1, "gas": 300_000})
    err = info.value
    assert err.error_args == {"provided": 1, "required": 3 * 10**18}
    assert err.tx_hash and w3.eth.get_transaction_receipt(err.tx_hash)["status"] == 0
    assert _nonce(w3, fresh_account.address) == before + 1


def test_insufficient_funds_is_a_transaction_error(w3, devnet):
    poor = Account.create()
    sender = TransactionSender(w3, poor, gas_price=GWEI)
    with pytest.raises(TransactionError, match="(?i)insufficient funds"):
        sender.send_raw({"to": devnet.owner, "value": 10**18, "gas": 21_000})
    assert _nonce(w3, poor.address) == 0


def test_concurrent_sends_share_one_nonce_lane(w3, devnet, fresh_account):
    sender = TransactionSender(w3, fresh_account)
    start = _nonce(w3, fresh_account.address)
    targets = [Account.create().address for _ in range(10)]
    receipts = []

    def send(to):
        receipts.append(sender.send_raw({"to": to, "value": 12345}))

    errors = run_concurrently(send, targets, join_timeout=60)
    assert errors == []
    nonces = sorted(w3.eth.get_transaction(r["transactionHash"])["nonce"] for r in receipts)
    assert nonces == list(range(start, start + 10))
    assert all(w3.eth.get_balance(t) == 12345 for t in targets)


def test_timeout_bumps_and_replaces_with_same_nonce(no_automine, devnet, fresh_account, caplog):
    w3 = no_automine
    sender = TransactionSender(
        w3,
        fresh_account,
        gas_price=10 * GWEI,
        receipt_timeout=0.3,
        max_bumps=10,
        gas_bump=Decimal("1.125"),
    )
    nonce = _nonce(w3, fresh_account.address)
    target = Account.create().address
    box = {}

    def run():
        try:
            box["receipt"] = sender.send_raw({"to": target, "value": 7, "gas": 21_000})
        except Exception as exc:  # noqa: BLE001
            box["error"] = exc

    caplog.set_level(logging.DEBUG, logger="broker.chain.sender")
    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(1.0)  # at least two receipt timeouts -> replacements in the pool
    w3.provider.make_request("evm_mine", [])
    thread.join(30)
    assert "error" not in box, box.get("error")
    mined = w3.eth.get_transaction(box["receipt"]["transactionHash"])
    assert mined["nonce"] == nonce
    assert mined["gasPrice"] > 10 * GWEI
    assert w3.eth.get_balance(target) == 7
    replaced = [r for r in caplog.records if "replaced nonce" in r.getMessage()]
    assert replaced, "no replacement was logged"
    assert fresh_account.key.hex()[-20:] not in caplog.text


def test_bumps_exhausted_raise_timeout_then_lane_recovers(no_automine, devnet, fresh_account):
    w3 = no_automine
    sender = TransactionSender(
        w3, fresh_account, gas_price=10 * GWEI, receipt_timeout=0.2, max_bumps=1
    )
    nonce = _nonce(w3, fresh_account.address)
    with pytest.raises(ce.TransactionTimeoutError) as info:
        sender.send_raw({"to": devnet.owner, "value": 1, "gas": 21_000})
    assert info.value.nonce == nonce and len(info.value.tx_hashes) == 2
    w3.provider.make_request("evm_mine", [])
    w3.provider.make_request("evm_setAutomine", [True])
    receipt = sender.send_raw({"to": devnet.owner, "value": 1, "gas": 21_000})
    assert w3.eth.get_transaction(receipt["transactionHash"])["nonce"] == nonce + 1


def test_gas_price_cap(no_automine, devnet, fresh_account):
    w3 = no_automine
    sender = TransactionSender(
        w3, fresh_account, gas_price=10 * GWEI, max_gas_price=10 * GWEI, receipt_timeout=0.2
    )
    with pytest.raises(ce.GasPriceCapError) as info:
        sender.send_raw({"to": devnet.owner, "value": 1, "gas": 21_000})
    assert info.value.gas_price == 10 * GWEI


def test_underpriced_is_bumped_until_the_cap(w3, devnet, fresh_account):
    # gas price 1 neuron is below anvil's base fee: "max fee per gas less than block base fee"
    sender = TransactionSender(w3, fresh_account, gas_price=1, max_bumps=3)
    before = _nonce(w3, fresh_account.address)
    with pytest.raises(ce.GasPriceCapError):
        sender.send_raw({"to": devnet.owner, "value": 1, "gas": 21_000})
    assert _nonce(w3, fresh_account.address) == before
    # with a cap above the base fee the bumps land it
    base = w3.eth.get_block("latest")["baseFeePerGas"]
    sender = TransactionSender(
        w3, fresh_account, gas_price=base // 2 + 1, max_gas_price=base * 4, gas_bump=Decimal(3)
    )
    receipt = sender.send_raw({"to": devnet.owner, "value": 1, "gas": 21_000})
    assert w3.eth.get_transaction(receipt["transactionHash"])["gasPrice"] >= base


def test_call_decodes_view_reverts(w3, devnet, fresh_account):
    sender = TransactionSender(w3, fresh_account)
    ledger = LedgerManagerContract(w3, devnet.ledger_address, sender)
    with pytest.raises(ce.LedgerNotExistsError):
        sender.call(ledger.contract.functions.getLedger(fresh_account.address))
    assert repr(sender) == f"TransactionSender(address={fresh_account.address})"


def test_bad_settings_rejected(w3, fresh_account):
    from broker._exceptions import InputError

    with pytest.raises(InputError):
        TransactionSender(w3, fresh_account, gas_bump=Decimal(1))
    with pytest.raises(InputError):
        TransactionSender(w3, fresh_account, receipt_timeout=0)
