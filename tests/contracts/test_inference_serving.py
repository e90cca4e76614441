"""InferenceServing behaviour on the session devnet (contracts.md A3), incl. EIP-712 settlement."""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak
from web3.logs import DISCARD

from broker.devnet import fund_new_account

ETHER = 10**18
SERVICE = "inference-v1.0"
ZERO = "0x" + "00" * 20


def L(value):
    if isinstance(value, (list, tuple)):
        return [L(v) for v in value]
    return value


def params(tee: str, **over):
    base = {
        "serviceType": "chatbot",
        "url": "http://127.0.0.1:1",
        "model": "m",
        "verifiability": "TeeML",
        "inputPrice": 1,
        "outputPrice": 2,
        "additionalInfo": "{}",
        "teeSignerAddress": tee,
    }
    base.update(over)
    return tuple(base.values())


def settlement_typed_data(chain_id: int, verifying_contract: str, message: dict) -> dict:
    """The EIP-712 ``TEESettlement`` typed data (``full_message``) of InferenceServing."""
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "TEESettlement": [
                {"name": "requestsHash", "type": "bytes32"},
                {"name": "nonce", "type": "uint256"},
                {"name": "provider", "type": "address"},
                {"name": "user", "type": "address"},
                {"name": "totalFee", "type": "uint256"},
            ],
        },
        "primaryType": "TEESettlement",
        "domain": {
            "name": "0G Inference Serving",
            "version": "1",
            "chainId": chain_id,
            "verifyingContract": verifying_contract,
        },
        "message": message,
    }


def sign_settlement(
    chain, tee, *, user, provider, total_fee, nonce, requests_hash=b"\x11" * 32
) -> bytes:
    typed = settlement_typed_data(
        chain.state.chain_id,
        chain.inference.address,
        {
            "requestsHash": requests_hash,
            "nonce": nonce,
            "provider": provider,
            "user": user,
            "totalFee": total_fee,
        },
    )
    return bytes(Account.sign_message(encode_typed_data(full_message=typed), tee.key).signature)


@pytest.fixture()
def setup(chain, devnet, fresh_account):
    """A provider with an owner-acknowledged TEE signer and a user with a 5 0G sub-account."""
    tee = Account.create()
    provider = fund_new_account(devnet, 1000 * ETHER)
    chain.send(
        provider,
        chain.inference.functions.addOrUpdateService(params(tee.address)),
        value=100 * ETHER,
    )
    chain.send(chain.owner, chain.inference.functions.acknowledgeTEESignerByOwner(provider.address))
    user = fresh_account
    chain.send(user, chain.ledger.functions.addLedger(""), value=10 * ETHER)
    chain.send(user, chain.ledger.functions.transferFund(provider.address, SERVICE, 5 * ETHER))
    return tee, provider, user


def item(chain, tee, user, provider, fee, nonce, sign_provider=None, signer=None):
    sig = sign_settlement(
        chain,
        signer or tee,
        user=user.address,
        provider=sign_provider or provider.address,
        total_fee=fee,
        nonce=nonce,
    )
    return (user.address, provider.address, fee, b"\x11" * 32, nonce, sig)


def results(chain, receipt):
    return [
        (e["args"]["user"], e["args"]["status"], e["args"]["unsettledAmount"])
        for e in chain.inference.events.TEESettlementResult().process_receipt(
            receipt, errors=DISCARD
        )
    ]


def test_service_stake_and_ack_reset(chain, devnet, fresh_account) -> None:
    inf = chain.inference.functions
    p = fresh_account
    tee = Account.create().address
    with chain.reverts("ServiceNotExist", (p.address,)):
        inf.getService(p.address).call()
    with chain.reverts("InsufficientStake", (99 * ETHER, 100 * ETHER)):
        chain.send(p, inf.addOrUpdateService(params(tee)), value=99 * ETHER)
    with chain.reverts("AdditionalInfoTooLong", ()):
        chain.send(
            p, inf.addOrUpdateService(params(tee, additionalInfo="x" * 4097)), value=100 * ETHER
        )
    receipt = chain.send(p, inf.addOrUpdateService(params(tee)), value=100 * ETHER)
    assert (
        chain.inference.events.ProviderStaked().process_receipt(receipt, errors=DISCARD)[0]["args"][
            "amount"
        ]
        == 100 * ETHER
    )
    service = inf.getService(p.address).call()
    assert (
        L(service)[:3] == [p.address, "chatbot", "http://127.0.0.1:1"]
        and service[9] == tee
        and service[10] is False
    )
    assert inf.serviceExists(p.address).call() is True
    with chain.reverts("CannotAddStakeWhenUpdating"):
        chain.send(p, inf.addOrUpdateService(params(tee)), value=1)
    with chain.reverts_with_message("Ownable: caller is not the owner"):
        chain.send(p, inf.acknowledgeTEESignerByOwner(p.address))
    with chain.reverts("ServiceNotExist", (ZERO,)):
        chain.send(chain.owner, inf.acknowledgeTEESignerByOwner(ZERO))
    receipt = chain.send(chain.owner, inf.acknowledgeTEESignerByOwner(p.address))
    ev = chain.inference.events.ProviderTEESignerAcknowledged().process_receipt(
        receipt, errors=DISCARD
    )[0]["args"]
    assert (ev["provider"], ev["teeSignerAddress"], ev["acknowledged"]) == (p.address, tee, True)
    chain.send(
        p, inf.addOrUpdateService(params(tee, inputPrice=5, url="http://x"))
    )  # price/url keep the ack
    assert inf.getService(p.address).call()[10] is True
    assert inf.getService(p.address).call()[3] == 5
    chain.send(p, inf.addOrUpdateService(params(tee, model="other")))  # critical field resets it
    assert inf.getService(p.address).call()[10] is False
    chain.send(chain.owner, inf.acknowledgeTEESignerByOwner(p.address))
    chain.send(chain.owner, inf.revokeTEESignerAcknowledgement(p.address))
    assert inf.getService(p.address).call()[10] is False
    services, total = inf.getAllServices(0, 0).call()
    assert total >= 1 and p.address in [s[0] for s in services]
    with chain.reverts("LimitTooLarge", (51, 50)):
        inf.getAllServices(0, 51).call()
    before = chain.balance(p.address)
    receipt = chain.send(p, inf.removeService())
    gas = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert chain.balance(p.address) == before + 100 * ETHER - gas
    assert inf.serviceExists(p.address).call() is False
    with chain.reverts(
        "InsufficientStake", (0, 100 * ETHER)
    ):  # a new registration needs a new stake
        chain.send(p, inf.addOrUpdateService(params(tee)))


def test_lock_time_admin(chain) -> None:
    inf = chain.inference.functions
    with chain.reverts("LockTimeOutOfRange", (3599, 3600, 604800)):
        chain.send(chain.owner, inf.updateLockTime(3599))
    receipt = chain.send(chain.owner, inf.updateLockTime(86400))
    assert (
        chain.inference.events.LockTimeUpdated().process_receipt(receipt, errors=DISCARD)[0][
            "args"
        ]["newLockTime"]
        == 86400
    )


def test_tokens_and_deleted_account_keeps_nonce_and_generation(chain, setup) -> None:
    tee, provider, user = setup
    inf, led = chain.inference.functions, chain.ledger.functions
    chain.send(user, inf.revokeToken(provider.address, 3))
    chain.send(user, inf.revokeTokens(provider.address, [0, 7]))
    assert [inf.isTokenRevoked(user.address, provider.address, i).call() for i in (0, 1, 3, 7)] == [
        True,
        False,
        True,
        True,
    ]
    assert inf.getAccount(user.address, provider.address).call()[10] == (1 << 0) | (1 << 3) | (
        1 << 7
    )
    receipt = chain.send(user, inf.revokeAllTokens(provider.address))
    assert (
        chain.inference.events.AllTokensRevoked().process_receipt(receipt, errors=DISCARD)[0][
            "args"
        ]["newGeneration"]
        == 1
    )
    account = inf.getAccount(user.address, provider.address).call()
    assert account[9] == 1 and account[10] == 0
    with chain.reverts("AccountNotExists", (user.address, user.address)):
        chain.send(user, inf.revokeToken(user.address, 1))
    with chain.reverts(
        "CannotRevokeWithNonZeroBalance", (user.address, provider.address, 5 * ETHER)
    ):
        chain.send(user, inf.acknowledgeTEESigner(provider.address, False))
    # settle once (nonce 7), then withdraw everything: the account is deleted, nonce/generation kept
    receipt = chain.send(
        provider, inf.settleFeesWithTEE([item(chain, tee, user, provider, ETHER, 7)])
    )
    chain.send(user, led.retrieveFund([provider.address], SERVICE))
    chain.increase_time(86401)
    chain.send(user, led.retrieveFund([provider.address], SERVICE))
    total = led.getLedger(user.address).call()[2]
    assert total == 9 * ETHER
    chain.send(user, led.refund(total))
    assert inf.accountExists(user.address, provider.address).call() is False
    chain.send(user, led.addLedger(""), value=3 * ETHER)
    chain.send(user, led.transferFund(provider.address, SERVICE, ETHER))
    account = inf.getAccount(user.address, provider.address).call()
    assert account[2] == 7 and account[9] == 1 and account[3] == ETHER and account[7] is True
    stale = item(chain, tee, user, provider, ETHER // 2, 7)
    receipt = chain.send(provider, inf.settleFeesWithTEE([stale]))
    assert results(chain, receipt) == [(user.address, 4, ETHER // 2)]  # replay refused


def test_settlement_success_pays_provider(chain, setup) -> None:
    tee, provider, user = setup
    inf, led = chain.inference.functions, chain.ledger.functions
    batch = [item(chain, tee, user, provider, 2 * ETHER, 1)]
    assert L(inf.previewSettlementResults(batch).call({"from": provider.address})) == [
        [],
        [],
        [],
        [],
    ]
    before = chain.balance(provider.address)
    receipt = chain.send(provider, inf.settleFeesWithTEE(batch))
    gas = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert chain.balance(provider.address) == before + 2 * ETHER - gas
    assert results(chain, receipt) == [(user.address, 0, 0)]
    spent = chain.ledger.events.FundSpent().process_receipt(receipt, errors=DISCARD)[0]["args"]
    assert (spent["user"], spent["service"], spent["amount"]) == (
        user.address,
        chain.inference.address,
        2 * ETHER,
    )
    account = inf.getAccount(user.address, provider.address).call()
    assert account[2] == 1 and account[3] == 3 * ETHER
    assert L(led.getLedger(user.address).call())[1:3] == [5 * ETHER, 8 * ETHER]


def test_settlement_failures_and_partial(chain, setup, devnet) -> None:
    tee, provider, user = setup
    inf = chain.inference.functions
    stranger = Account.create()
    other_tee = Account.create()
    batch = [
        item(chain, tee, user, provider, ETHER, 5, signer=other_tee),  # INVALID_SIGNATURE
        (user.address, stranger.address, ETHER, b"\x11" * 32, 6, b""),  # PROVIDER_MISMATCH
        (stranger.address, provider.address, ETHER, b"\x11" * 32, 6, b"\x00" * 65),  # no account: 5
        item(chain, tee, user, provider, 7 * ETHER, 10),  # PARTIAL: 5 settled, 2 unsettled
        item(chain, tee, user, provider, ETHER, 10),  # INVALID_NONCE (consumed above)
    ]
    preview = L(inf.previewSettlementResults(batch).call({"from": provider.address}))
    # the preview runs every item against the same (stale) state: the reused nonce 10 looks fine
    assert preview[0] == [user.address, user.address, stranger.address]
    assert preview[1] == [5, 2, 5]
    assert preview[2] == [user.address] and preview[3] == [2 * ETHER]
    receipt = chain.send(provider, inf.settleFeesWithTEE(batch))
    assert results(chain, receipt) == [
        (user.address, 5, ETHER),
        (user.address, 2, ETHER),
        (stranger.address, 5, ETHER),
        (user.address, 1, 2 * ETHER),
        (user.address, 4, ETHER),
    ]
    account = inf.getAccount(user.address, provider.address).call()
    assert account[2] == 10 and account[3] == 0
    assert L(chain.ledger.functions.getLedger(user.address).call())[1:3] == [5 * ETHER, 5 * ETHER]


def test_settlement_cancels_refunds_and_no_tee_signer(chain, setup) -> None:
    tee, provider, user = setup
    inf, led = chain.inference.functions, chain.ledger.functions
    chain.send(user, led.retrieveFund([provider.address], SERVICE))  # 5 0G pending refund
    receipt = chain.send(
        provider, inf.settleFeesWithTEE([item(chain, tee, user, provider, 2 * ETHER, 1)])
    )
    assert results(chain, receipt) == [(user.address, 0, 0)]
    account = inf.getAccount(user.address, provider.address).call()
    assert L(account)[3:5] == [3 * ETHER, 3 * ETHER] and account[5][0][1] == 3 * ETHER
    chain.send(chain.owner, inf.revokeTEESignerAcknowledgement(provider.address))
    receipt = chain.send(
        provider, inf.settleFeesWithTEE([item(chain, tee, user, provider, ETHER, 2)])
    )
    assert results(chain, receipt) == [(user.address, 3, ETHER)]


def test_settlement_batch_limits(chain, setup) -> None:
    tee, provider, user = setup
    inf = chain.inference.functions
    with chain.reverts("NoSettlementsProvided"):
        chain.send(provider, inf.settleFeesWithTEE([]))
    one = item(chain, tee, user, provider, 1, 1)
    with chain.reverts("TooManySettlements", (51, 50)):
        chain.send(provider, inf.settleFeesWithTEE([one] * 51))
    with chain.reverts("BatchSizeTooLarge", (501, 500)):
        inf.getBatchAccountsByUsers([user.address] * 501).call({"from": provider.address})
    accounts = inf.getBatchAccountsByUsers([user.address, Account.create().address]).call(
        {"from": provider.address}
    )
    assert accounts[0][0] == user.address and accounts[0][3] == 5 * ETHER
    assert accounts[1][0] == ZERO and accounts[1][3] == 0


def test_refund_cancellation_cycle_and_paging(chain, setup) -> None:
    _tee, provider, user = setup
    inf, led = chain.inference.functions, chain.ledger.functions
    chain.send(user, led.depositFund(), value=10 * ETHER)
    for _ in range(5):
        chain.send(user, led.retrieveFund([provider.address], SERVICE))
        # re-funding cancels the pending refund first; only the first round moves 1 0G from
        # the ledger
        chain.send(user, led.transferFund(provider.address, SERVICE, 6 * ETHER))
    account = inf.getAccount(user.address, provider.address).call()
    assert L(account)[3:5] == [6 * ETHER, 0] and account[8] == 0
    assert L(led.getLedger(user.address).call())[1:3] == [14 * ETHER, 20 * ETHER]
    accounts, total = inf.getAccountsByUser(user.address, 0, 0).call()
    assert total == 1 and accounts[0][1] == provider.address
    accounts, total = inf.getAccountsByProvider(provider.address, 0, 50).call()
    assert total == 1 and accounts[0][0] == user.address
    assert L(inf.getAccountsByProvider(provider.address, 1, 10).call()) == [[], 1]
    with chain.reverts("LimitTooLarge", (51, 50)):
        inf.getAllAccounts(0, 51).call()


def test_c3_typed_data_digest_matches_vector() -> None:
    """Our EIP-712 encoding reproduces test-vectors.md C3 (mainnet domain)."""
    typed = settlement_typed_data(
        16661,
        "0x47340d900bdFec2BD393c626E12ea0656F938d84",
        {
            "requestsHash": bytes.fromhex(
                "abde05883a6b9503d461fd07b0db2fd3da30a0a55794a76d6296241efc56b9a8"
            ),
            "nonce": 17000000000000000,
            "provider": "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
            "user": "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
            "totalFee": 3500,
        },
    )
    msg = encode_typed_data(full_message=typed)
    digest = keccak(b"\x19" + msg.version + msg.header + msg.body)
    assert digest.hex() == "0bbcca7a40a37976dc2d69e07710121d3a06515395070fa051e8b9b1015af7b4"
    key = "0x4c0883a69102937d6231471b5dbb6204fe512961708279b7e1a8d7d7a3c2b9e3"
    sig = Account.sign_message(msg, key).signature.hex()
    assert sig.removeprefix("0x") == (
        "311e1b74de0d4753d9a402eb334e790fb68521e7e99e24067885f55a2a9cba1b"
        "27579d11116f25628f857d81b413448c7c748ed9949f41be6f51e94b128a7ba41c"
    )
