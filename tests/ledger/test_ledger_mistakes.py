"""Mistakes must not move money: a transfer or acknowledgement to an address with no registered
service (a one-character typo of a real provider included) and a deposit beyond the wallet are
refused with typed errors before anything is sent."""

from __future__ import annotations

import pytest
from devnet_helpers import register_chatbot_service
from eth_account import Account

from broker.ledger.errors import InsufficientWalletBalanceError, ProviderNotRegisteredError

OG = 10**18


def _nonce(b) -> int:
    return b.w3.eth.get_transaction_count(b.address, "pending")


def _typo(address: str) -> str:
    """The address with its last hex digit changed (lower case: no checksum to trip on)."""
    low = address.lower()
    return low[:-1] + ("0" if low[-1] != "0" else "1")


@pytest.fixture(scope="module")
def registered(devnet):
    return register_chatbot_service(
        devnet, "http://127.0.0.1:9", model="m", input_price=1, output_price=1
    ).address


@pytest.fixture()
def user(funded_broker):
    funded_broker.ledger.add_ledger("10")
    return funded_broker


def test_transfer_to_a_typo_of_a_provider_is_refused(user, registered):
    typo = _typo(registered)
    nonce = _nonce(user)
    with pytest.raises(ProviderNotRegisteredError) as info:
        user.ledger.transfer_fund(typo, "inference", "1")
    assert info.value.address.lower() == typo
    assert typo in str(info.value).lower() and "no service is registered" in str(info.value)
    assert _nonce(user) == nonce  # nothing sent
    assert user.ledger.get_ledger().available_balance == 10 * OG  # nothing locked
    user.ledger.transfer_fund(registered, "inference", "1")  # the real one works
    assert user.inference_contract.get_account(user.address, registered).balance == OG


def test_allow_unregistered_transfers_anyway(user):
    other = Account.create().address
    user.ledger.transfer_fund(other, "inference", "1", allow_unregistered=True)
    assert user.inference_contract.get_account(user.address, other).balance == OG


def test_acknowledge_unregistered_is_refused_even_with_a_sub_account(user):
    other = Account.create().address
    nonce = _nonce(user)
    with pytest.raises(ProviderNotRegisteredError):
        user.inference.acknowledge_provider_signer(other)  # would create a sub-account
    assert _nonce(user) == nonce
    user.ledger.transfer_fund(other, "inference", "1", allow_unregistered=True)
    nonce = _nonce(user)
    with pytest.raises(ProviderNotRegisteredError):  # not "already acknowledged"
        user.inference.acknowledge_provider_signer(other)
    assert _nonce(user) == nonce


def test_deposit_beyond_the_wallet_says_so_in_0g(funded_broker):
    b = funded_broker
    nonce = _nonce(b)
    with pytest.raises(InsufficientWalletBalanceError) as info:
        b.ledger.add_ledger("1e30")
    text = str(info.value)
    assert "1000 0G" in text and "less than the 1000000000000000000000000000000 0G" in text
    assert "gas" in text and "estimateGas" not in text
    b.ledger.add_ledger("3")
    with pytest.raises(InsufficientWalletBalanceError, match="to deposit plus gas"):
        b.ledger.deposit_fund("1e30")
    with pytest.raises(InsufficientWalletBalanceError):
        b.ledger.deposit_fund_for(Account.create().address, "5000")
    assert _nonce(b) == nonce + 1  # only the add_ledger
    assert info.value.amount == 10**48 and info.value.balance <= 1000 * OG


def test_errors_carry_a_cli_hint_but_a_neutral_message(funded_broker):
    from broker.ledger.errors import MinimumBalanceError, NoLedgerError

    with pytest.raises(NoLedgerError) as no_ledger:
        funded_broker.ledger.refund("1")
    assert no_ledger.value.hint == "0g-broker add-account --amount 3"
    with pytest.raises(MinimumBalanceError) as minimum:
        funded_broker.ledger.add_ledger("1")
    assert "broker.ledger" not in str(minimum.value)
    assert minimum.value.hint == "0g-broker add-account --amount 3"


def test_deposit_of_the_whole_wallet_leaves_no_gas_and_says_so(funded_broker):
    b = funded_broker
    balance = b.w3.eth.get_balance(b.address)  # exactly 1000 0G
    nonce = _nonce(b)
    with pytest.raises(InsufficientWalletBalanceError, match="plus gas") as info:
        b.ledger.add_ledger("1000")  # covers the value, not the gas
    assert "Insufficient funds for gas" not in str(info.value)
    assert info.value.balance == balance and _nonce(b) == nonce
