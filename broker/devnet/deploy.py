"""Deploy our LedgerManager + InferenceServing stack on a fresh dev chain (contracts.md A4).

Each contract goes logic -> ``UpgradeableBeacon(logic)`` -> ``BeaconProxy(beacon, "")`` and is then
initialised in a separate transaction. Sent from anvil's first account starting at nonce 0, the
proxies land at the TS SDK's built-in hardhat addresses (LedgerManager
``0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0``, InferenceServing
``0x0165878A594ca255338adfa4d48449f69242Eb8F``), so the unmodified SDK recognises the devnet.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_account import Account
from web3 import Web3
from web3.exceptions import ContractLogicError, Web3Exception

from broker.chain.artifacts import load_abi, load_artifact
from broker.devnet.errors import DevnetError

__all__ = [
    "DEFAULT_LOCK_TIME",
    "HARDHAT_INFERENCE_ADDRESS",
    "HARDHAT_LEDGER_ADDRESS",
    "INFERENCE_SERVICE_DESCRIPTION",
    "INFERENCE_SERVICE_NAME",
    "DeployedContracts",
    "deploy_contracts",
    "fee_fields",
    "verify_deployment",
]

HARDHAT_LEDGER_ADDRESS = "0x9fE46736679d2D9a65F0992F2272dE9f3c7fa6e0"
HARDHAT_INFERENCE_ADDRESS = "0x0165878A594ca255338adfa4d48449f69242Eb8F"
#: Refund lock time of the deployed InferenceServing, in seconds (the deploy scripts' default).
DEFAULT_LOCK_TIME = 86_400
INFERENCE_SERVICE_TYPE = "inference"
INFERENCE_SERVICE_VERSION = "v1.0"
INFERENCE_SERVICE_NAME = "inference-v1.0"
INFERENCE_SERVICE_DESCRIPTION = "inference serving service v1.0"
_GAS_LIMIT = 8_000_000


def fee_fields(w3: Web3) -> dict[str, int]:
    """EIP-1559 fee fields for a dev-chain transaction: tip 1 gwei, cap 2x the latest base fee +
    tip.

    Deliberately not derived from ``eth_gasPrice``: anvil suggests prices from recent tips, so
    paying a multiple of its suggestion makes the suggestion grow exponentially.
    """
    base_fee = int(w3.eth.get_block("latest").get("baseFeePerGas", 0) or 0)
    tip = 10**9
    return {"maxFeePerGas": 2 * base_fee + tip, "maxPriorityFeePerGas": tip}


@dataclass(frozen=True)
class DeployedContracts:
    """Checksummed addresses of the deployed stack (proxies are what clients use)."""

    ledger: str
    inference: str
    ledger_beacon: str
    inference_beacon: str
    ledger_implementation: str
    inference_implementation: str
    owner: str


class _Sender:
    """Signs and sends plain transactions from one key with explicit, consecutive nonces."""

    def __init__(self, w3: Web3, private_key: str) -> None:
        self._w3 = w3
        self._account = Account.from_key(private_key)
        self.address = self._account.address
        self._chain_id = w3.eth.chain_id

    def send(self, tx: dict[str, Any], what: str) -> Any:
        tx = {
            **tx,
            "from": self.address,
            "nonce": self._w3.eth.get_transaction_count(self.address, "pending"),
            "chainId": self._chain_id,
            "gas": _GAS_LIMIT,
            **fee_fields(self._w3),
        }
        signed = self._account.sign_transaction(tx)
        try:
            tx_hash = self._w3.eth.send_raw_transaction(signed.raw_transaction)
            receipt = self._w3.eth.wait_for_transaction_receipt(
                tx_hash, timeout=30, poll_latency=0.05
            )
        except (Web3Exception, ValueError, OSError) as exc:
            raise DevnetError(f"deploy step {what!r} failed: {exc}") from None
        if receipt["status"] != 1:
            raise DevnetError(f"deploy step {what!r} reverted (tx {tx_hash.hex()})")
        return receipt

    def deploy(self, name: str, *args: Any) -> str:
        artifact = load_artifact(name)
        factory = self._w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
        built = factory.constructor(*args).build_transaction(
            {"from": self.address, "gas": _GAS_LIMIT, "gasPrice": 1, "nonce": 0}
        )
        data = built["data"]
        receipt = self.send({"data": data, "value": 0}, f"deploy {name}")
        return Web3.to_checksum_address(receipt["contractAddress"])

    def call(self, contract: Any, fn: str, *args: Any) -> None:
        data = contract.encode_abi(fn, args=list(args))
        self.send({"to": contract.address, "data": data, "value": 0}, f"{fn}")


def _beacon_proxied(sender: _Sender, name: str) -> tuple[str, str, str]:
    implementation = sender.deploy(name)
    beacon = sender.deploy("UpgradeableBeacon", implementation)
    proxy = sender.deploy("BeaconProxy", beacon, b"")
    return implementation, beacon, proxy


def deploy_contracts(
    w3: Web3, deployer_key: str, *, lock_time: int = DEFAULT_LOCK_TIME
) -> DeployedContracts:
    """Deploy and wire up LedgerManager and InferenceServing (contracts.md A4, nonces 0-9).

    Args:
        w3: connection to the dev chain (anvil automines).
        deployer_key: ``0x`` hex private key of the deployer (anvil account 0 for the hardhat
            addresses); becomes the owner of both contracts and beacons.
        lock_time: InferenceServing refund lock time in seconds (3600-604800).

    Returns:
        :class:`DeployedContracts`.

    Raises:
        DevnetError: a transaction failed, or the registry check
            ``getServiceInfo(inference).fullName == "inference-v1.0"`` does not hold.
    """
    sender = _Sender(w3, deployer_key)
    ledger_impl, ledger_beacon, ledger_proxy = _beacon_proxied(
        sender, "LedgerManager"
    )  # nonces 0-2
    ledger = w3.eth.contract(address=ledger_proxy, abi=load_abi("LedgerManager"))
    sender.call(ledger, "initialize", sender.address)  # 3
    inf_impl, inf_beacon, inf_proxy = _beacon_proxied(sender, "InferenceServing")  # 4-6
    inference = w3.eth.contract(address=inf_proxy, abi=load_abi("InferenceServing"))
    sender.call(inference, "initialize", lock_time, ledger_proxy, sender.address)  # 7
    sender.call(
        ledger,
        "registerService",
        INFERENCE_SERVICE_TYPE,
        INFERENCE_SERVICE_VERSION,
        inf_proxy,
        INFERENCE_SERVICE_DESCRIPTION,
    )  # 8
    sender.call(
        ledger, "setRecommendedService", INFERENCE_SERVICE_TYPE, INFERENCE_SERVICE_VERSION
    )  # 9
    deployed = DeployedContracts(
        ledger=ledger_proxy,
        inference=inf_proxy,
        ledger_beacon=ledger_beacon,
        inference_beacon=inf_beacon,
        ledger_implementation=ledger_impl,
        inference_implementation=inf_impl,
        owner=sender.address,
    )
    if not verify_deployment(w3, ledger_proxy, inf_proxy):
        raise DevnetError(
            "deployment check failed: getServiceInfo(inference).fullName != inference-v1.0"
        )
    return deployed


def verify_deployment(w3: Web3, ledger_address: str, inference_address: str) -> bool:
    """True when both addresses hold code and the ledger's registry names the inference contract
    ``inference-v1.0`` (``LedgerManager.getServiceInfo``). Never raises for a wrong chain."""
    try:
        if not w3.eth.get_code(ledger_address) or not w3.eth.get_code(inference_address):
            return False
        ledger = w3.eth.contract(address=ledger_address, abi=load_abi("LedgerManager"))
        info = ledger.functions.getServiceInfo(inference_address).call()
    except (Web3Exception, ContractLogicError, ValueError, OSError):
        return False
    return info[4] == INFERENCE_SERVICE_NAME
