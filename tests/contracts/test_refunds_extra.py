"""``TooManyRefunds`` (contracts.md A3.3 ``requestRefundAll``, ``MAX_REFUNDS_PER_ACCOUNT`` = 5) is
reachable through the LedgerManager, the only caller the service accepts.

Why it is reachable: ``requestRefundAll`` only adds a refund when ``balance − pendingRefund > 0``,
and right after it ``balance == pendingRefund``. ``transferFund`` to an existing sub-account calls
``depositFund(user, provider, cancel)`` with ``cancel = min(amount, pendingRefund)``, and
``cancelRefunds`` works newest-first and *partially* cancels the last refund it touches, which then
stays active. So a top-up smaller than the newest refund frees exactly that much without removing a
refund, and the next ``retrieveFund`` turns it into a new refund: halving amounts (1, 0.5, 0.25,
0.125, 0.0625 0G) stack up five refunds, and the sixth request reverts the whole
``retrieveFund``."""

from __future__ import annotations

import pytest
from eth_account import Account

from broker.chain import errors as ce

ETHER = 10**18
SERVICE = "inference-v1.0"


def _account(chain, user, provider):
    return chain.inference.functions.getAccount(user, provider).call()


def _active(acc) -> list[int]:
    """Amounts of the active refunds ``refunds[:validRefundsLength]`` of an Account tuple."""
    return [r[1] for r in acc[5][: acc[8]]]


@pytest.mark.timeout(120)
def test_sixth_refund_reverts_too_many_refunds(chain, fresh_account, make_broker):
    user = fresh_account
    provider = Account.create().address
    lf = chain.ledger.functions
    chain.send(user, lf.addLedger(""), value=3 * ETHER)
    chain.send(user, lf.transferFund(provider, SERVICE, ETHER))
    chain.send(user, lf.retrieveFund([provider], SERVICE))  # refund #1: 1 0G
    assert _active(_account(chain, user.address, provider)) == [ETHER]
    expected = [ETHER]
    top_up = ETHER // 2
    for _ in range(4):  # refunds #2..#5
        chain.send(user, lf.transferFund(provider, SERVICE, top_up))
        acc = _account(chain, user.address, provider)
        expected[-1] -= top_up  # partial cancel, still active
        assert _active(acc) == expected and acc[3] - acc[4] == top_up
        chain.send(user, lf.retrieveFund([provider], SERVICE))
        expected.append(top_up)
        top_up //= 2
    acc = _account(chain, user.address, provider)
    assert (
        _active(acc) == expected == [ETHER // 2, ETHER // 4, ETHER // 8, ETHER // 16, ETHER // 16]
    )
    assert (acc[3], acc[4], acc[8]) == (ETHER, ETHER, 5)
    # the top-ups only cancelled refunds: no ledger money moved after the first transfer
    assert list(chain.ledger.functions.getLedger(user.address).call()[1:3]) == [
        2 * ETHER,
        3 * ETHER,
    ]

    # a sixth amount to refund: the request reverts with TooManyRefunds(user, provider)
    chain.send(user, lf.transferFund(provider, SERVICE, ETHER // 32))
    with chain.reverts("TooManyRefunds", (user.address, provider)):
        chain.send(user, lf.retrieveFund([provider], SERVICE))
    # the same through our LedgerBroker: a typed, decoded error, and nothing was sent
    broker = make_broker(user)
    nonce = chain.w3.eth.get_transaction_count(user.address, "pending")
    with pytest.raises(ce.TooManyRefundsError) as info:
        broker.ledger.retrieve_fund(providers=[provider])
    assert info.value.error_name == "TooManyRefunds"
    assert {k: v.lower() for k, v in info.value.error_args.items()} == {
        "user": user.address.lower(),
        "provider": provider.lower(),
    }
    assert chain.w3.eth.get_transaction_count(user.address, "pending") == nonce
    acc = _account(chain, user.address, provider)
    assert acc[8] == 5 and acc[4] == ETHER - ETHER // 32 and acc[3] == ETHER

    # once the refunds matured, retrieveFund releases all five and requests the rest again
    chain.increase_time(chain.inference.functions.lockTime().call() + 1)
    chain.send(user, lf.retrieveFund([provider], SERVICE))
    acc = _account(chain, user.address, provider)
    assert _active(acc) == [ETHER // 32] and acc[3] == acc[4] == ETHER // 32
    assert (
        chain.ledger.functions.getLedger(user.address).call()[1] == 2 * ETHER + ETHER - ETHER // 32
    )


def test_too_many_refunds_not_callable_directly(chain, fresh_account):
    """``requestRefundAll`` is ledger-only: a user cannot call it to stack refunds."""
    with chain.reverts("CallerNotLedger", (fresh_account.address,)):
        chain.send(
            fresh_account,
            chain.inference.functions.requestRefundAll(
                fresh_account.address, Account.create().address
            ),
        )
