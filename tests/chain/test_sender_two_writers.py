"""Two writers on one key (issue #9 §4: two ``create_broker`` instances failed with ``nonce too
low`` / ``transaction already imported``): each sender re-signs with a fresh nonce when the other
took its nonce, never replaces the other's transaction, and never sends one operation twice.

Real parts: the session devnet (anvil, automine on and off), two brokers / senders with separate
nonce lanes on one key, as two processes would have.
"""

from __future__ import annotations

import threading
import time

import pytest
from devnet_helpers import devnet_user_broker, run_concurrently
from eth_account import Account
from web3 import Web3

from broker.chain.sender import TransactionSender

pytestmark = pytest.mark.timeout(180)

ZG = 10**18
GWEI = 10**9


def test_two_brokers_on_one_key_deposit_concurrently(devnet, fresh_account):
    a, b = devnet_user_broker(devnet, fresh_account), devnet_user_broker(devnet, fresh_account)
    a.ledger.add_ledger(3)
    assert b.ledger.get_ledger().total_balance == 3 * ZG
    for broker in (a, b):  # both lanes start from the same pending nonce
        broker.ledger.deposit_fund("1")
    jobs = [a, b, a, b] * 3  # identical deposits: some signed bytes collide exactly
    errors = run_concurrently(lambda br: br.ledger.deposit_fund("1"), jobs, join_timeout=120)
    assert errors == []
    assert a.ledger.get_ledger().total_balance == (3 + 2 + len(jobs)) * ZG
    w3 = Web3(Web3.HTTPProvider(devnet.rpc_url))
    assert w3.eth.get_transaction_count(fresh_account.address) == 1 + 2 + len(jobs)


@pytest.fixture()
def manual_mining(devnet):
    w3 = Web3(Web3.HTTPProvider(devnet.rpc_url))
    yield w3
    w3.provider.make_request("evm_mine", [])
    w3.provider.make_request("evm_setAutomine", [True])


def _pending(w3, address) -> int:
    return w3.eth.get_transaction_count(address, "pending")


def test_another_writers_pending_transaction_is_not_replaced(devnet, fresh_account, manual_mining):
    w3 = manual_mining
    price = 2 * w3.eth.gas_price
    a = TransactionSender(w3, fresh_account, gas_price=price, receipt_timeout=3, max_bumps=1)
    b = TransactionSender(w3, fresh_account, gas_price=price, receipt_timeout=3, max_bumps=1)
    to_a, to_b = Account.create().address, Account.create().address
    a.send_raw({"to": to_a, "value": 1, "gas": 21_000})  # nonce k
    b.send_raw({"to": to_b, "value": 1, "gas": 21_000})  # nonce k+1; b's lane at k+2
    w3.provider.make_request("evm_setAutomine", [False])
    results: dict[str, object] = {}

    def send(name, sender, to, value):
        try:
            results[name] = sender.send_raw({"to": to, "value": value, "gas": 21_000})
        except Exception as exc:  # noqa: BLE001
            results[name] = exc

    start = _pending(w3, fresh_account.address)  # k+2
    ta = threading.Thread(target=send, args=("a", a, to_a, 10))  # stale lane → fresh k+2, pool
    ta.start()
    deadline = time.monotonic() + 10
    while _pending(w3, fresh_account.address) == start and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _pending(w3, fresh_account.address) == start + 1
    tb = threading.Thread(target=send, args=("b", b, to_b, 20))  # b's lane says k+2: taken
    tb.start()
    while _pending(w3, fresh_account.address) == start + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    w3.provider.make_request("evm_mine", [])
    ta.join(30)
    tb.join(30)
    for name in ("a", "b"):
        assert not isinstance(results[name], Exception), results[name]
    nonces = {
        name: w3.eth.get_transaction(results[name]["transactionHash"])["nonce"]
        for name in ("a", "b")
    }
    assert nonces == {"a": start, "b": start + 1}
    assert (w3.eth.get_balance(to_a), w3.eth.get_balance(to_b)) == (11, 21)


def test_sender_switches_off_transport_retry_of_sends_only(devnet, fresh_account):
    w3 = Web3(Web3.HTTPProvider(devnet.rpc_url))
    before = list(w3.provider.exception_retry_configuration.method_allowlist)
    assert "eth_sendRawTransaction" in before
    TransactionSender(w3, fresh_account)
    after = list(w3.provider.exception_retry_configuration.method_allowlist)
    assert "eth_sendRawTransaction" not in after
    assert set(before) - set(after) == {"eth_sendRawTransaction"}  # reads still retried


def test_unanswered_send_is_not_resent_and_says_it_may_be_mined(devnet, fresh_account):
    from hang_relay_helpers import HangingRelay

    from broker._exceptions import TransactionError

    relay = HangingRelay(devnet.rpc_url)
    try:
        w3 = Web3(Web3.HTTPProvider(relay.url, request_kwargs={"timeout": 2}))
        sender = TransactionSender(w3, fresh_account, gas_price=2 * w3.eth.gas_price)
        assert sender.chain_id == devnet.chain_id
        direct = Web3(Web3.HTTPProvider(devnet.rpc_url))
        start = direct.eth.get_transaction_count(fresh_account.address)
        to = Account.create().address
        relay.mute_sends.set()  # the node gets the transaction; its answer is lost
        with pytest.raises(TransactionError) as info:
            sender.send_raw({"to": to, "value": 777, "gas": 21_000})
        message = str(info.value)
        assert "may still be mined" in message and "0x" in message
        relay.release()
        assert direct.eth.get_transaction_count(fresh_account.address) == start + 1
        assert direct.eth.get_balance(to) == 777  # landed once, not resent
        receipt = sender.send_raw({"to": to, "value": 1, "gas": 21_000})  # the lane recovers
        assert receipt["status"] == 1 and direct.eth.get_balance(to) == 778
    finally:
        relay.close()


def test_a_transaction_replaced_by_another_writer_is_sent_again(
    devnet, fresh_account, manual_mining
):
    """Another writer (here a wallet signing by hand) replaces our pending transaction at a
    higher price and its transaction is mined: ours can never be mined, so the sender re-signs it
    with a fresh nonce instead of timing out (and it lands exactly once)."""
    w3 = manual_mining
    price = w3.eth.gas_price + GWEI
    sender = TransactionSender(w3, fresh_account, gas_price=price, receipt_timeout=1, max_bumps=3)
    ours, theirs = Account.create().address, Account.create().address
    w3.provider.make_request("evm_setAutomine", [False])
    nonce = _pending(w3, fresh_account.address)
    result: dict[str, object] = {}

    def send() -> None:
        try:
            result["receipt"] = sender.send_raw({"to": ours, "value": 5, "gas": 21_000})
        except Exception as exc:  # noqa: BLE001
            result["error"] = exc

    t = threading.Thread(target=send)
    t.start()
    deadline = time.monotonic() + 10
    while _pending(w3, fresh_account.address) == nonce and time.monotonic() < deadline:
        time.sleep(0.05)
    other = fresh_account.sign_transaction(
        {
            "to": theirs,
            "value": 9,
            "gas": 21_000,
            "gasPrice": 20 * price,
            "nonce": nonce,
            "chainId": devnet.chain_id,
        }
    )
    w3.eth.send_raw_transaction(other.raw_transaction)  # replaces ours in the pool
    w3.provider.make_request("evm_mine", [])
    while t.is_alive() and time.monotonic() < deadline + 20:
        time.sleep(0.3)
        w3.provider.make_request("evm_mine", [])
    t.join(5)
    assert "error" not in result, result.get("error")
    receipt = result["receipt"]
    assert w3.eth.get_transaction(receipt["transactionHash"])["nonce"] == nonce + 1
    assert (w3.eth.get_balance(ours), w3.eth.get_balance(theirs)) == (5, 9)
