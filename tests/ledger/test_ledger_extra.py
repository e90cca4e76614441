"""``deleteLedger`` success path through the LedgerBroker (contracts.md A2.5, A3.3
``deleteAccount``): a ledger whose total reached 0 because providers settled all of it with
``settleFeesWithTEE`` (A3.5, ``spendFund``) is deleted with its sub-accounts, and a re-created
sub-account keeps its settlement nonce and token generation (replay protection)."""

from __future__ import annotations

import pytest
from devnet_helpers import MOCK_TEE_KEY, register_chatbot_service
from web3 import Web3
from web3.logs import DISCARD

from broker.chain.contracts import InferenceServingContract
from broker.chain.sender import TransactionSender
from broker.ledger.errors import LedgerNotEmptyError, NoLedgerError
from broker.provider.settlement import SettlementStatus, TEESettlement, settlement_typed_data
from broker.provider.tee import LocalTeeSigner

pytestmark = pytest.mark.timeout(180)

OG = 10**18
REQUESTS_HASH = b"\x42" * 32


def _settle(devnet, provider, user: str, fee: int, nonce: int):
    """``settleFeesWithTEE`` of one item signed by the mock TEE key, sent by ``provider``.

    Returns ``(receipt, [(user, status, unsettled)], contract)``."""
    w3 = Web3(Web3.HTTPProvider(devnet.rpc_url))
    contract = InferenceServingContract(
        w3, devnet.inference_address, TransactionSender(w3, provider)
    )
    typed = settlement_typed_data(
        chain_id=devnet.chain_id,
        verifying_contract=devnet.inference_address,
        requests_hash=REQUESTS_HASH,
        nonce=nonce,
        provider=provider.address,
        user=user,
        total_fee=fee,
    )
    signature = LocalTeeSigner(bytes.fromhex(MOCK_TEE_KEY[2:])).sign_typed_data(typed)
    item = TEESettlement(user, provider.address, fee, REQUESTS_HASH, nonce, bytes(signature))
    receipt = contract.sender.send(contract.contract.functions.settleFeesWithTEE([item.as_tuple()]))
    events = contract.contract.events.TEESettlementResult().process_receipt(receipt, errors=DISCARD)
    return receipt, [(e.args.user, e.args.status, e.args.unsettledAmount) for e in events]


def test_delete_ledger_after_full_settlement(devnet, make_broker, fresh_account):
    user = make_broker(fresh_account)
    p1 = register_chatbot_service(
        devnet, "http://127.0.0.1:1", model="m", input_price=1, output_price=1, owner_ack=True
    )
    p2 = register_chatbot_service(
        devnet, "http://127.0.0.1:2", model="m", input_price=1, output_price=1, owner_ack=True
    )
    user.ledger.add_ledger("3", "to be deleted")
    user.ledger.transfer_fund(p1.address, "inference", "2")
    user.ledger.transfer_fund(p2.address, "inference", "1")
    user.inference.revoke_all_tokens(p1.address)  # generation 0 -> 1
    ledger = user.ledger.get_ledger()
    assert (ledger.total_balance, ledger.available_balance) == (3 * OG, 0)
    with pytest.raises(LedgerNotEmptyError):
        user.ledger.delete_ledger()

    # both providers settle everything: the ledger total reaches 0 through spendFund
    nonces = {p1.address: 1_000, p2.address: 2_000}
    for provider, fee in ((p1, 2 * OG), (p2, OG)):
        wallet = user.w3.eth.get_balance(provider.address)
        receipt, results = _settle(devnet, provider, user.address, fee, nonces[provider.address])
        assert results == [(user.address, SettlementStatus.SUCCESS, 0)]
        gas = receipt["gasUsed"] * receipt["effectiveGasPrice"]
        assert user.w3.eth.get_balance(provider.address) == wallet + fee - gas
    ledger = user.ledger.get_ledger()
    assert (ledger.total_balance, ledger.available_balance) == (0, 0)
    assert user.inference_contract.get_account(user.address, p1.address).balance == 0

    # deleteLedger through our broker: ledger and both sub-accounts gone
    wallet = user.w3.eth.get_balance(user.address)
    result = user.ledger.delete_ledger()
    assert (
        user.w3.eth.get_balance(user.address)
        == wallet - result.gas_used * result.effective_gas_price
    )  # nothing paid out
    receipt = user.w3.eth.get_transaction_receipt(result.tx_hash)
    deleted = user.inference_contract.contract.events.AccountDeleted().process_receipt(
        receipt, errors=DISCARD
    )
    assert sorted((e.args.user, e.args.provider, e.args.refundedAmount) for e in deleted) == sorted(
        [(user.address, p1.address, 0), (user.address, p2.address, 0)]
    )
    with pytest.raises(NoLedgerError, match="Account does not exist"):
        user.ledger.get_ledger()
    with pytest.raises(NoLedgerError):
        user.ledger.delete_ledger()
    assert not user.inference_contract.account_exists(user.address, p1.address)
    assert not user.inference_contract.account_exists(user.address, p2.address)
    assert user.ledger.get_ledger_providers() == []

    # a new ledger and sub-account: nonce and generation survived the deletion
    user.ledger.add_ledger("3")
    user.ledger.transfer_fund(p1.address, "inference", "1")
    acc = user.inference_contract.get_account(user.address, p1.address)
    assert (acc.balance, acc.pending_refund, acc.valid_refunds_length) == (OG, 0, 0)
    assert (acc.nonce, acc.generation, acc.revoked_bitmap) == (nonces[p1.address], 1, 0)
    assert acc.acknowledged is True
    # so the old signed settlement cannot be replayed against the new money
    _, results = _settle(devnet, p1, user.address, OG, nonces[p1.address])
    assert results == [(user.address, SettlementStatus.INVALID_NONCE, OG)]
    assert user.inference_contract.get_account(user.address, p1.address).balance == OG
    assert user.ledger.get_ledger().total_balance == 3 * OG
