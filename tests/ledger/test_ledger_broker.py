"""LedgerBroker against the devnet: happy paths, client-side checks (nothing sent), decoded
contract reverts when the checks are bypassed, concurrency."""

from __future__ import annotations

from decimal import Decimal

import pytest
from devnet_helpers import run_concurrently
from eth_account import Account

from broker._exceptions import InputError, InvalidAddressError, InvalidAmountError
from broker.chain import errors as ce
from broker.ledger.errors import (
    InsufficientLedgerBalanceError,
    LedgerAlreadyExistsError,
    LedgerNotEmptyError,
    MinimumBalanceError,
    NoLedgerError,
    ProviderNotRegisteredError,
    UnknownServiceError,
)
from broker.units import Neuron

OG = 10**18


def _provider() -> str:
    return Account.create().address


def _nonce(b) -> int:
    return b.w3.eth.get_transaction_count(b.address, "pending")


def _wallet(b) -> int:
    return b.w3.eth.get_balance(b.address)


@pytest.fixture()
def b(funded_broker):
    return funded_broker


@pytest.fixture()
def with_ledger(b):
    b.ledger.add_ledger("10", "hello")
    return b


def test_add_ledger_deposit_refund(b):
    result = b.ledger.add_ledger("3.5", "info")
    assert result.tx_hash.startswith("0x") and result.block_number > 0
    ledger = b.ledger.get_ledger()
    assert (
        ledger.user,
        ledger.total_balance,
        ledger.available_balance,
        ledger.additional_info,
    ) == (b.address, 35 * OG // 10, 35 * OG // 10, "info")
    b.ledger.deposit_fund("0.1")
    b.ledger.deposit_fund(Neuron(5))
    assert b.ledger.get_ledger().total_balance == 36 * OG // 10 + 5
    wallet_before = _wallet(b)
    r = b.ledger.refund(Decimal("0.6"))
    assert b.ledger.get_ledger().available_balance == 3 * OG + 5
    spent_gas = r.gas_used * r.effective_gas_price
    assert _wallet(b) == wallet_before + 6 * OG // 10 - spent_gas
    # withdrawing everything deletes the ledger (contract rule)
    b.ledger.refund(Neuron(3 * OG + 5))
    with pytest.raises(NoLedgerError):
        b.ledger.get_ledger()


def test_deposit_creates_ledger_and_deposit_for(b):
    b.ledger.deposit_fund(3)
    assert b.ledger.get_ledger().total_balance == 3 * OG
    other = _provider()
    b.ledger.deposit_fund_for(other.lower(), "3")
    assert b.ledger_contract.get_ledger(other).total_balance == 3 * OG
    b.ledger.deposit_fund_for(other, "0.5")  # an existing ledger takes any amount
    assert b.ledger_contract.get_ledger(other).total_balance == 35 * OG // 10


def test_transfer_retrieve_and_views(with_ledger):
    b = with_ledger
    p1, p2 = _provider(), _provider()
    b.ledger.transfer_fund(p1, "inference", "2", allow_unregistered=True)
    b.ledger.transfer_fund(p2, "inference-v1.0", Neuron(OG), allow_unregistered=True)
    # existing sub-account: below 1 0G is fine
    b.ledger.transfer_fund(p1, "inference", "0.25", allow_unregistered=True)
    assert b.ledger.get_ledger_providers() == [p1, p2]
    overview = b.ledger.get_ledger_with_detail()
    assert (overview.total, overview.locked, overview.available) == (
        10 * OG,
        325 * OG // 100,
        675 * OG // 100,
    )
    assert [(s.provider, s.balance, s.pending_refund) for s in overview.inference] == [
        (p1, 225 * OG // 100, 0),
        (p2, OG, 0),
    ]
    results = b.ledger.retrieve_fund("inference", providers=[p1])
    assert len(results) == 1
    detail = b.ledger.get_sub_account_with_detail(p1)
    assert detail.pending_refund == 225 * OG // 100
    assert [r.amount for r in detail.refunds] == [225 * OG // 100]
    lock = b.inference_contract.lock_time()
    assert 0 <= detail.refunds[0].remaining_lock <= lock and detail.lock_time == lock
    with_balance = b.ledger.get_providers_with_balance()
    assert {s.provider for s in with_balance} == {p1, p2}
    # transfer to an account with a pending refund cancels the refund first (A2.6): no ledger debit
    available = b.ledger.get_ledger().available_balance
    b.ledger.transfer_fund(p1, "inference", "1", allow_unregistered=True)
    assert b.ledger.get_ledger().available_balance == available
    assert b.inference_contract.get_account(b.address, p1).pending_refund == 125 * OG // 100
    # retrieve everything (default: all providers)
    assert len(b.ledger.retrieve_fund()) == 1
    assert b.inference_contract.get_account(b.address, p2).pending_refund == OG


def test_retrieve_fund_batches_by_20(b):
    b.ledger.add_ledger("30")
    providers = [_provider() for _ in range(21)]
    for p in providers:
        b.ledger.transfer_fund(p, "inference", "1", allow_unregistered=True)
    results = b.ledger.retrieve_fund()
    assert len(results) == 2 and results[0].tx_hash != results[1].tx_hash
    assert all(b.inference_contract.get_pending_refund(b.address, p) == OG for p in providers)
    # the contract itself refuses 21 at once (the SDK's bug, §13 item 4)
    with pytest.raises(ce.TooManyProvidersError) as info:
        b.ledger_contract.retrieve_fund(providers, "inference-v1.0")
    assert info.value.error_args == {"requested": 21, "maximum": 20}


def test_no_providers_retrieve_is_a_no_op(with_ledger):
    nonce = _nonce(with_ledger)
    assert with_ledger.ledger.retrieve_fund() == []
    assert _nonce(with_ledger) == nonce


def test_concurrent_transfers(b):
    b.ledger.add_ledger("20")
    providers = [_provider() for _ in range(10)]
    # providers[0] exists first so that a sub-1-0G top-up is valid for it
    b.ledger.transfer_fund(providers[0], "inference", "1", allow_unregistered=True)
    nonce = _nonce(b)

    def go(p):
        b.ledger.transfer_fund(
            p, "inference", "0.5" if p == providers[0] else "1", allow_unregistered=True
        )

    errors = run_concurrently(go, providers, join_timeout=120)
    assert errors == []
    assert _nonce(b) == nonce + 10
    ledger = b.ledger.get_ledger()
    assert ledger.available_balance == 20 * OG - 1 * OG - OG // 2 - 9 * OG
    balances = {s.provider: s.balance for s in b.ledger.get_ledger_with_detail().inference}
    assert balances[providers[0]] == 15 * OG // 10
    assert all(balances[p] == OG for p in providers[1:])
    assert ledger.locked_balance == sum(balances.values())


def test_concurrent_transfers_same_provider(with_ledger):
    b = with_ledger
    p = _provider()
    b.ledger.transfer_fund(p, "inference", "1", allow_unregistered=True)

    def go(_):
        b.ledger.transfer_fund(p, "inference", "0.5", allow_unregistered=True)

    errors = run_concurrently(go, range(10), join_timeout=120)
    assert errors == []
    assert b.inference_contract.get_account(b.address, p).balance == 6 * OG
    assert b.ledger.get_ledger().available_balance == 4 * OG


@pytest.mark.parametrize(
    ("call", "error", "text"),
    [
        (
            lambda b: b.ledger.add_ledger("2.9"),
            MinimumBalanceError,
            "Minimum balance to create a ledger is 3 0G, but got 2.9 0G",
        ),
        (lambda b: b.ledger.add_ledger(0.5), InvalidAmountError, "float"),
        (lambda b: b.ledger.add_ledger("3", "x" * 4097), InputError, "4096"),
        (lambda b: b.ledger.deposit_fund("1"), MinimumBalanceError, "No ledger exists yet"),
        (lambda b: b.ledger.deposit_fund("-1"), InvalidAmountError, "negative"),
        (lambda b: b.ledger.deposit_fund("NaN"), InvalidAmountError, "finite"),
        (lambda b: b.ledger.deposit_fund("0.0000000000000000001"), InvalidAmountError, "decimals"),
        (lambda b: b.ledger.deposit_fund_for("0x123", "3"), InvalidAddressError, "recipient"),
        (lambda b: b.ledger.deposit_fund_for(_provider(), "1"), MinimumBalanceError, "no ledger"),
        (lambda b: b.ledger.refund("1"), NoLedgerError, "Account does not exist"),
        (
            lambda b: b.ledger.transfer_fund(
                _provider(), "inference", "1", allow_unregistered=True
            ),
            NoLedgerError,
            "Account",
        ),
        (
            lambda b: b.ledger.transfer_fund("not-an-address", "inference", "1"),
            InvalidAddressError,
            "provider",
        ),
        (
            lambda b: b.ledger.transfer_fund(_provider(), "fine-tuning", "1"),
            UnknownServiceError,
            "Service name not available",
        ),
        (lambda b: b.ledger.retrieve_fund("inference"), NoLedgerError, "Account"),
        (lambda b: b.ledger.delete_ledger(), NoLedgerError, "Account"),
    ],
)
def test_client_checks_without_ledger_send_nothing(b, call, error, text):
    nonce = _nonce(b)
    with pytest.raises(error, match=text):
        call(b)
    assert _nonce(b) == nonce


@pytest.mark.parametrize(
    ("call", "error", "text"),
    [
        (lambda b: b.ledger.add_ledger("3"), LedgerAlreadyExistsError, "Account already exists"),
        (lambda b: b.ledger.refund("11"), InsufficientLedgerBalanceError, "available 10 0G"),
        (lambda b: b.ledger.refund("8"), MinimumBalanceError, "leave 2 0G"),
        (
            lambda b: b.ledger.transfer_fund(
                _provider(), "inference", "0.5", allow_unregistered=True
            ),
            MinimumBalanceError,
            "at least 1 0G",
        ),
        (
            lambda b: b.ledger.transfer_fund(
                _provider(), "inference", "10.5", allow_unregistered=True
            ),
            InsufficientLedgerBalanceError,
            "needs 10.5 0G",
        ),
        (
            lambda b: b.ledger.transfer_fund(_provider(), "inference", "1"),
            ProviderNotRegisteredError,
            "no service is registered at 0x",
        ),
        (lambda b: b.ledger.delete_ledger(), LedgerNotEmptyError, "withdraw all funds"),
        (lambda b: b.ledger.retrieve_fund(providers=["0xzz"]), InvalidAddressError, "provider"),
    ],
)
def test_client_checks_with_ledger_send_nothing(with_ledger, call, error, text):
    nonce = _nonce(with_ledger)
    with pytest.raises(error, match=text):
        call(with_ledger)
    assert _nonce(with_ledger) == nonce


def test_bypassed_checks_give_decoded_reverts(with_ledger):
    b = with_ledger
    lc = b.ledger_contract
    nonce = _nonce(b)
    with pytest.raises(ce.LedgerExistsError) as info:
        lc.add_ledger("", 3 * OG)
    assert info.value.error_args == {"user": b.address}
    assert "Account already exists" in str(info.value)
    with pytest.raises(ce.InsufficientBalanceError) as info:
        lc.refund(11 * OG)
    assert info.value.error_args == {"user": b.address}
    with pytest.raises(ce.MinimumDepositRequiredError) as info:
        lc.refund(8 * OG)
    assert info.value.error_args == {"provided": 2 * OG, "required": 3 * OG}
    with pytest.raises(ce.MinimumDepositRequiredError) as info:
        lc.transfer_fund(_provider(), "inference-v1.0", OG // 2)
    assert info.value.error_args == {"provided": OG // 2, "required": OG}
    with pytest.raises(ce.InsufficientAvailableBalanceError) as info:
        lc.transfer_fund(_provider(), "inference-v1.0", 11 * OG)
    assert info.value.error_args == {"available": 10 * OG, "required": 11 * OG}
    with pytest.raises(ce.ServiceNotFoundError):
        lc.transfer_fund(_provider(), "nope-v9", OG)
    with pytest.raises(ce.MustWithdrawAllFundsFirstError):
        lc.delete_ledger()
    with pytest.raises(ce.AccountNotExistsError):
        b.inference_contract.get_account(b.address, _provider())
    assert _nonce(b) == nonce  # every revert was caught at the estimate
