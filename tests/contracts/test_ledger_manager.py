"""LedgerManager behaviour on the session devnet (contracts.md A2)."""

from __future__ import annotations

from eth_account import Account
from web3.logs import DISCARD

from broker.devnet import fund_new_account
from broker.devnet.deploy import HARDHAT_INFERENCE_ADDRESS, HARDHAT_LEDGER_ADDRESS

ETHER = 10**18
SERVICE = "inference-v1.0"


def L(value):
    """Tuples (web3 structs) to lists, recursively, for comparisons."""
    if isinstance(value, (list, tuple)):
        return [L(v) for v in value]
    return value


EMPTY_PARAMS = ("chatbot", "http://127.0.0.1:1", "model", "TeeML", 1, 2, "{}", "0x" + "00" * 20)


def _provider(chain, devnet, tee=None):
    """A provider with a registered (owner-acknowledged) service."""
    provider = fund_new_account(devnet, 1000 * ETHER)
    params = list(EMPTY_PARAMS)
    params[7] = (tee or Account.create()).address
    chain.send(
        provider, chain.inference.functions.addOrUpdateService(tuple(params)), value=100 * ETHER
    )
    return provider


def test_hardhat_addresses_and_registry(chain, devnet) -> None:
    assert devnet.ledger_address == HARDHAT_LEDGER_ADDRESS
    assert devnet.inference_address == HARDHAT_INFERENCE_ADDRESS
    assert devnet.chain_id == 31337
    led = chain.ledger.functions
    info = led.getServiceInfo(devnet.inference_address).call()
    assert info[0] == devnet.inference_address and info[1] == devnet.inference_address
    assert L(info)[2:7] == ["inference", "v1.0", SERVICE, "inference serving service v1.0", True]
    assert led.getServiceAddressByName(SERVICE).call() == devnet.inference_address
    assert L(led.getRecommendedService("inference").call()) == ["v1.0", devnet.inference_address]
    assert L(led.getAllVersions("inference").call()) == [
        ["v1.0"],
        [devnet.inference_address],
        [True],
    ]
    assert led.isRecommendedVersion("inference", "v1.0").call() is True
    assert led.isRecommendedVersion("inference", "v2.0").call() is False
    assert len(led.getAllActiveServices().call()) == 1
    assert led.owner().call() == devnet.owner == devnet.accounts[0].address
    assert led.initialized().call() is True
    with chain.reverts("NoRecommendedService", ("fine-tuning",)):
        led.getRecommendedService("fine-tuning").call()


def test_constants(chain) -> None:
    led = chain.ledger.functions
    assert led.MIN_ACCOUNT_BALANCE().call() == 3 * ETHER
    assert led.MIN_TRANSFER_AMOUNT().call() == ETHER
    assert led.MAX_PROVIDERS_PER_BATCH().call() == 20
    assert led.MAX_SERVICES().call() == 500
    assert led.MAX_PROVIDERS_PER_USER_PER_SERVICE().call() == 50
    assert led.MAX_ADDITIONAL_INFO_LENGTH().call() == 4096
    inf = chain.inference.functions
    assert inf.MIN_LOCKTIME().call() == 3600
    assert inf.MAX_LOCKTIME().call() == 604800
    assert inf.MIN_PROVIDER_STAKE().call() == 100 * ETHER
    assert inf.lockTime().call() == 86400
    assert inf.ledgerAddress().call() == chain.ledger.address


def test_erc165_answers(chain) -> None:
    inf = chain.inference.functions
    assert inf.supportsInterface(bytes.fromhex("01ffc9a7")).call() is True
    assert inf.supportsInterface(bytes.fromhex("160841b1")).call() is True
    assert inf.supportsInterface(bytes.fromhex("ffffffff")).call() is False


def test_initialize_only_once(chain, devnet) -> None:
    with chain.reverts("AlreadyInitialized"):
        chain.ledger.functions.initialize(devnet.owner).call()
    with chain.reverts("AlreadyInitialized"):
        chain.inference.functions.initialize(86400, chain.ledger.address, devnet.owner).call()


def test_register_service_checks(chain, devnet, fresh_account) -> None:
    led = chain.ledger.functions
    with chain.reverts_with_message("Ownable: caller is not the owner"):
        chain.send(fresh_account, led.registerService("x", "v1", devnet.inference_address, ""))
    with chain.reverts("InvalidServiceAddress", ("0x" + "00" * 20,)):
        chain.send(chain.owner, led.registerService("x", "v1", "0x" + "00" * 20, ""))
    with chain.reverts("ServiceTypeRequired"):
        chain.send(chain.owner, led.registerService("", "v1", devnet.inference_address, ""))
    with chain.reverts("VersionRequired"):
        chain.send(chain.owner, led.registerService("x", "", devnet.inference_address, ""))
    with chain.reverts("ServiceAlreadyRegistered", (devnet.inference_address,)):
        chain.send(chain.owner, led.registerService("x", "v1", devnet.inference_address, ""))
    with chain.reverts("ServiceNameExists", (SERVICE,)):
        chain.send(chain.owner, led.registerService("inference", "v1.0", fresh_account.address, ""))
    with chain.reverts("ServiceMustImplementIServing", (fresh_account.address,)):
        chain.send(chain.owner, led.registerService("x", "v1", fresh_account.address, ""))
    with chain.reverts("ServiceMustImplementIServing", (chain.ledger.address,)):
        chain.send(chain.owner, led.registerService("x", "v1", chain.ledger.address, ""))
    with chain.reverts("ServiceNotFound", ("0x" + "00" * 20,)):
        chain.send(chain.owner, led.setRecommendedService("inference", "v9"))


def test_add_ledger_minimum_and_exists(chain, fresh_account) -> None:
    led = chain.ledger.functions
    with chain.reverts("MinimumDepositRequired", (3 * ETHER - 1, 3 * ETHER)):
        chain.send(fresh_account, led.addLedger("info"), value=3 * ETHER - 1)
    with chain.reverts("AdditionalInfoTooLong", (4097, 4096)):
        chain.send(fresh_account, led.addLedger("x" * 4097), value=3 * ETHER)
    with chain.reverts("LedgerNotExists", (fresh_account.address,)):
        led.getLedger(fresh_account.address).call()
    chain.send(fresh_account, led.addLedger("info"), value=3 * ETHER)
    assert L(led.getLedger(fresh_account.address).call()) == [
        fresh_account.address,
        3 * ETHER,
        3 * ETHER,
        "info",
    ]
    with chain.reverts("LedgerExists", (fresh_account.address,)):
        chain.send(fresh_account, led.addLedger("info"), value=3 * ETHER)
    ledgers, total = led.getAllLedgers(0, 0).call()
    assert total >= 1 and len(ledgers) == min(total, 50)
    assert L(led.getAllLedgers(total, 10).call()) == [[], total]


def test_deposit_rules(chain, fresh_account) -> None:
    led = chain.ledger.functions
    with chain.reverts("ZeroAmountNotAllowed"):
        chain.send(fresh_account, led.depositFund(), value=0)
    with chain.reverts("MinimumDepositRequired", (ETHER, 3 * ETHER)):
        chain.send(fresh_account, led.depositFund(), value=ETHER)
    chain.send(fresh_account, led.depositFund(), value=3 * ETHER)  # creates the ledger
    chain.send(fresh_account, led.depositFund(), value=ETHER)
    assert L(led.getLedger(fresh_account.address).call())[1:3] == [4 * ETHER, 4 * ETHER]
    other = Account.create()
    with chain.reverts("ZeroAddressNotAllowed"):
        chain.send(fresh_account, led.depositFundFor("0x" + "00" * 20), value=3 * ETHER)
    chain.send(fresh_account, led.depositFundFor(other.address), value=5 * ETHER)
    assert L(led.getLedger(other.address).call()) == [other.address, 5 * ETHER, 5 * ETHER, ""]
    with chain.reverts("DirectDepositsDisabled"):
        chain.w3.eth.estimate_gas(
            {"from": fresh_account.address, "to": chain.ledger.address, "value": 1}
        )


def test_update_info_and_refund_rules(chain, fresh_account) -> None:
    led = chain.ledger.functions
    user = fresh_account
    with chain.reverts("LedgerNotExists", (user.address,)):
        chain.send(user, led.refund(1))
    chain.send(user, led.addLedger("a"), value=10 * ETHER)
    receipt = chain.send(user, led.updateAdditionalInfo("b"))
    assert (
        chain.ledger.events.LedgerInfoUpdated().process_receipt(receipt, errors=DISCARD)[0]["args"][
            "additionalInfo"
        ]
        == "b"
    )
    with chain.reverts("InsufficientBalance", (user.address,)):
        chain.send(user, led.refund(11 * ETHER))
    with chain.reverts("MinimumDepositRequired", (2 * ETHER, 3 * ETHER)):
        chain.send(user, led.refund(8 * ETHER))
    before = chain.balance(user.address)
    receipt = chain.send(user, led.refund(7 * ETHER))
    gas = receipt["gasUsed"] * receipt["effectiveGasPrice"]
    assert chain.balance(user.address) == before + 7 * ETHER - gas
    assert L(led.getLedger(user.address).call())[1:3] == [3 * ETHER, 3 * ETHER]
    chain.send(user, led.refund(3 * ETHER))  # remaining 0 is allowed and deletes the ledger
    with chain.reverts("LedgerNotExists", (user.address,)):
        led.getLedger(user.address).call()


def test_transfer_fund_new_sub_account(chain, devnet, fresh_account) -> None:
    led, inf = chain.ledger.functions, chain.inference.functions
    provider = _provider(chain, devnet)
    user = fresh_account
    with chain.reverts("LedgerNotExists", (user.address,)):
        chain.send(user, led.transferFund(provider.address, SERVICE, ETHER))
    chain.send(user, led.addLedger("my-info"), value=10 * ETHER)
    with chain.reverts("ServiceNotFound", ("0x" + "00" * 20,)):
        chain.send(user, led.transferFund(provider.address, "nope-v1", ETHER))
    with chain.reverts("MinimumDepositRequired", (ETHER - 1, ETHER)):
        chain.send(user, led.transferFund(provider.address, SERVICE, ETHER - 1))
    with chain.reverts("InsufficientAvailableBalance", (10 * ETHER, 11 * ETHER)):
        chain.send(user, led.transferFund(provider.address, SERVICE, 11 * ETHER))
    chain.send(user, led.transferFund(provider.address, SERVICE, 2 * ETHER))
    assert L(led.getLedger(user.address).call())[1:3] == [8 * ETHER, 10 * ETHER]
    account = inf.getAccount(user.address, provider.address).call()
    assert L(account)[0:5] == [user.address, provider.address, 0, 2 * ETHER, 0]
    assert (
        account[6] == "my-info" and account[7] is True
    )  # additionalInfo copied, auto-acknowledged
    assert L(led.getLedgerProviders(user.address, SERVICE).call()) == [provider.address]
    assert inf.accountExists(user.address, provider.address).call() is True
    with chain.reverts("CallerNotLedger", (user.address,)):
        chain.send(user, inf.addAccount(user.address, provider.address, ""), value=ETHER)
    with chain.reverts("CallFailed"):  # the user cannot be its own provider
        chain.send(user, led.transferFund(user.address, SERVICE, ETHER))


def test_retrieve_refund_lock_and_transfer_cancels_pending(chain, devnet, fresh_account) -> None:
    led, inf = chain.ledger.functions, chain.inference.functions
    provider = _provider(chain, devnet)
    user = fresh_account
    chain.send(user, led.addLedger(""), value=10 * ETHER)
    chain.send(user, led.transferFund(provider.address, SERVICE, 4 * ETHER))
    with chain.reverts("TooManyProviders", (21, 20)):
        chain.send(user, led.retrieveFund([provider.address] * 21, SERVICE))
    receipt = chain.send(user, led.retrieveFund([provider.address], SERVICE))
    events = chain.inference.events.RefundRequested().process_receipt(receipt, errors=DISCARD)
    assert events[0]["args"]["index"] == 0
    account = inf.getAccount(user.address, provider.address).call()
    assert L(account)[3:5] == [4 * ETHER, 4 * ETHER] and account[8] == 1
    assert inf.getPendingRefund(user.address, provider.address).call() == 4 * ETHER
    # not matured: a second retrieve collects nothing and adds no refund
    chain.send(user, led.retrieveFund([provider.address], SERVICE))
    assert inf.getAccount(user.address, provider.address).call()[8] == 1
    assert led.getLedger(user.address).call()[1] == 6 * ETHER

    # existing account: transferring cancels the pending refund first, no ledger money moves
    chain.send(user, led.transferFund(provider.address, SERVICE, ETHER))
    account = inf.getAccount(user.address, provider.address).call()
    assert L(account)[3:5] == [4 * ETHER, 3 * ETHER]
    assert led.getLedger(user.address).call()[1] == 6 * ETHER
    # larger than pending: the rest comes from the ledger
    chain.send(user, led.transferFund(provider.address, SERVICE, 5 * ETHER))
    account = inf.getAccount(user.address, provider.address).call()
    assert L(account)[3:5] == [6 * ETHER, 0] and account[8] == 0
    assert L(led.getLedger(user.address).call())[1:3] == [4 * ETHER, 10 * ETHER]

    chain.send(user, led.retrieveFund([provider.address], SERVICE))
    chain.increase_time(86400 + 1)
    chain.send(user, led.retrieveFund([provider.address], SERVICE))
    assert L(led.getLedger(user.address).call())[1:3] == [10 * ETHER, 10 * ETHER]
    account = inf.getAccount(user.address, provider.address).call()
    assert L(account)[3:5] == [0, 0] and account[8] == 0
    # withdrawing everything deletes the ledger and the service sub-account
    chain.send(user, led.refund(10 * ETHER))
    assert inf.accountExists(user.address, provider.address).call() is False
    assert L(led.getLedgerProviders(user.address, SERVICE).call()) == []


def test_delete_ledger_requires_zero_total(chain, devnet, fresh_account) -> None:
    led = chain.ledger.functions
    user = fresh_account
    chain.send(user, led.addLedger(""), value=3 * ETHER)
    with chain.reverts("MustWithdrawAllFundsFirst", (3 * ETHER,)):
        chain.send(user, led.deleteLedger())


def test_spend_fund_only_serving(chain, fresh_account) -> None:
    with chain.reverts("CallerNotRegisteredService", (fresh_account.address,)):
        chain.send(fresh_account, chain.ledger.functions.spendFund(fresh_account.address, 1))
