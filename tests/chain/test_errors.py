"""broker.chain.errors: revert decoding without a chain (raw data), selectors from contracts.md."""

import pytest
from eth_abi import encode
from web3.exceptions import ContractCustomError

from broker import errors as all_errors
from broker._exceptions import TransactionError
from broker.chain import errors as ce

USER = "0x1111111111111111111111111111111111111111"
PROVIDER = "0x2222222222222222222222222222222222222222"


@pytest.mark.parametrize(
    ("name", "selector"),
    [
        ("InsufficientBalance", "897f6c58"),
        ("LedgerExists", "cde58aa1"),
        ("MinimumDepositRequired", "54443ec4"),
        ("AccountNotExists", "08ca03ac"),
        ("TooManyProviders", "829e4c32"),
        ("InsufficientAvailableBalance", "adb9e043"),
    ],
)
def test_generated_classes_and_selectors(name, selector):
    cls = ce.error_class(name)
    assert cls.__name__ == f"{name}Error"
    assert getattr(ce, f"{name}Error") is cls
    assert getattr(all_errors, f"{name}Error") is cls
    assert issubclass(cls, ce.ContractRevertError) and issubclass(cls, TransactionError)
    err = ce.decode_revert("0x" + selector + "00" * 64)
    assert isinstance(err, cls)
    assert err.selector == "0x" + selector


def test_decode_custom_error_with_args_and_friendly_text():
    data = bytes.fromhex("08ca03ac") + encode(["address", "address"], [USER, PROVIDER])
    err = ce.decode_revert(ContractCustomError("0x" + data.hex(), data="0x" + data.hex()))
    assert isinstance(err, ce.AccountNotExistsError)
    assert err.error_name == "AccountNotExists"
    assert err.error_args == {"user": USER, "provider": PROVIDER}
    assert str(err).startswith(f"AccountNotExists(user={USER}, provider={PROVIDER}): Sub-account")
    assert "\n" not in str(err)


def test_decode_uint_args_without_friendly_text():
    data = bytes.fromhex("54443ec4") + encode(["uint256", "uint256"], [5, 3 * 10**18])
    err = ce.decode_revert(data)
    assert isinstance(err, ce.MinimumDepositRequiredError)
    assert err.error_args == {"provided": 5, "required": 3 * 10**18}
    assert str(err) == f"MinimumDepositRequired(provided=5, required={3 * 10**18})"


def test_string_and_panic_and_unknown():
    s = ce.decode_revert(
        "0x08c379a0" + encode(["string"], ["Ownable: caller is not the owner"]).hex()
    )
    assert isinstance(s, ce.RevertStringError)
    assert s.error_args == {"message": "Ownable: caller is not the owner"}
    assert "Ownable: caller is not the owner" in str(s)
    p = ce.decode_revert("0x4e487b71" + encode(["uint256"], [0x12]).hex())
    assert isinstance(p, ce.PanicError) and p.error_args == {"code": 0x12}
    assert "division" in str(p)
    u = ce.decode_revert("0xdeadbeef")
    assert isinstance(u, ce.UnknownRevertError) and u.selector == "0xdeadbeef"
    assert ce.error_class("Error") is ce.RevertStringError
    with pytest.raises(KeyError):
        ce.error_class("NoSuchError")


def test_shared_error_names_map_to_one_class():
    # AdditionalInfoTooLong exists with two signatures (LedgerManager 2 args, InferenceServing none)
    a = ce.decode_revert("0x69e0a42c" + encode(["uint256", "uint256"], [5000, 4096]).hex())
    b = ce.decode_revert("0xef54fd9d")
    assert type(a) is type(b) is ce.AdditionalInfoTooLongError
    assert a.error_args == {"length": 5000, "max": 4096} and b.error_args == {}


def test_every_abi_error_has_a_class():
    from broker.chain.artifacts import load_abi

    for contract in ("LedgerManager", "InferenceServing"):
        for item in load_abi(contract):
            if item["type"] == "error":
                assert ce.error_class(item["name"]).abi_name == item["name"]


def test_generated_names_never_shadow_categories():
    from broker._exceptions import InvalidAddressError

    cls = ce.error_class("InvalidAddress")  # InferenceServing's InvalidAddress(address)
    assert cls.__name__ == "InvalidAddressRevertError" and cls is not InvalidAddressError
    assert all_errors.InvalidAddressError is InvalidAddressError
    assert len(all_errors.__all__) == len(set(all_errors.__all__))
    for name in all_errors.__all__:
        assert issubclass(getattr(all_errors, name), all_errors.BrokerError)
