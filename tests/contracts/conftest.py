"""Helpers for contract tests on the session devnet: web3 handles, a signed-transaction sender and a
custom-error decoder (selector -> name and arguments from our ABIs)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any

import pytest
from eth_abi import decode
from eth_account import Account
from eth_utils import keccak
from web3 import Web3
from web3.exceptions import ContractCustomError, ContractLogicError

from broker.chain.artifacts import load_abi
from broker.devnet.deploy import fee_fields

ETHER = 10**18


def _canonical(param: dict) -> str:
    if param["type"].startswith("tuple"):
        return "(" + ",".join(_canonical(c) for c in param["components"]) + ")" + param["type"][5:]
    return param["type"]


def _error_table() -> dict[bytes, tuple[str, list[str]]]:
    table = {}
    for name in ("LedgerManager", "InferenceServing"):
        for entry in load_abi(name):
            if entry["type"] == "error":
                types = [_canonical(i) for i in entry["inputs"]]
                sig = f"{entry['name']}({','.join(types)})"
                table[keccak(text=sig)[:4]] = (entry["name"], types)
    return table


ERRORS = _error_table()


def decode_revert(data: str | bytes) -> tuple[str, tuple]:
    """(error name, decoded args) of custom-error revert data."""
    raw = bytes.fromhex(data[2:]) if isinstance(data, str) else data
    name, types = ERRORS[raw[:4]]
    return name, tuple(decode(types, raw[4:]))


class Reverted(Exception):
    pass


class Chain:
    """Thin wrapper over web3 for tests: send from a LocalAccount, read, time travel."""

    def __init__(self, state) -> None:
        self.state = state
        self.w3 = Web3(Web3.HTTPProvider(state.rpc_url, request_kwargs={"timeout": 30}))
        self.ledger = self.w3.eth.contract(
            address=state.ledger_address, abi=load_abi("LedgerManager")
        )
        self.inference = self.w3.eth.contract(
            address=state.inference_address, abi=load_abi("InferenceServing")
        )
        self.owner = Account.from_key(state.accounts[0].private_key.get_secret_value())

    def send(self, account, call, value: int = 0) -> Any:
        """Sign and send ``call`` (a bound contract function) from ``account``; return the receipt.

        A revert surfaces at gas estimation as ContractCustomError / ContractLogicError."""
        tx = call.build_transaction(
            {
                "from": account.address,
                "value": value,
                "nonce": self.w3.eth.get_transaction_count(account.address, "pending"),
                **fee_fields(self.w3),
                "chainId": self.state.chain_id,
            }
        )
        tx["gas"] = int(tx["gas"] * 1.3) + 50_000
        signed = account.sign_transaction(tx)
        receipt = self.w3.eth.wait_for_transaction_receipt(
            self.w3.eth.send_raw_transaction(signed.raw_transaction), timeout=30, poll_latency=0.02
        )
        assert receipt["status"] == 1
        return receipt

    @contextmanager
    def reverts(self, name: str, args: tuple | None = None):
        """Expect a custom-error revert ``name`` (and exactly ``args`` when given)."""
        try:
            yield
        except ContractCustomError as exc:
            got, got_args = decode_revert(exc.data)
            assert got == name, f"expected {name}, got {got}{got_args}"
            if args is not None:
                norm = tuple(a.lower() if isinstance(a, str) else a for a in args)
                got_norm = tuple(a.lower() if isinstance(a, str) else a for a in got_args)
                assert got_norm == norm, f"{name}: expected args {args}, got {got_args}"
        else:
            raise AssertionError(f"expected revert {name}")

    @contextmanager
    def reverts_with_message(self, text: str):
        with pytest.raises(ContractLogicError) as info:
            yield
        assert text in str(info.value)

    def balance(self, address: str) -> int:
        return self.w3.eth.get_balance(address)

    def increase_time(self, seconds: int) -> None:
        self.w3.provider.make_request("evm_increaseTime", [seconds])
        self.w3.provider.make_request("evm_mine", [])


@pytest.fixture(scope="session")
def chain(devnet) -> Chain:
    return Chain(devnet)
