"""Helpers shared by several test folders (imported by name: ``tests/conftest.py`` puts
``tests/helpers`` on sys.path): account keys, a chatbot service registered on the session devnet,
concurrent calls, the mock TEE signer of test-vectors.md C2, user brokers on the devnet and an
in-process provider stack run by a freshly funded provider."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from eth_account import Account
from web3 import Web3

from broker.chain.contracts import InferenceServingContract
from broker.chain.sender import TransactionSender

OG = 10**18

#: The mock TEE signer of test-vectors.md C2 (key and address).
MOCK_TEE_KEY = "0x4c0883a69102937d6231471b5dbb6204fe512961708279b7e1a8d7d7a3c2b9e3"
MOCK_TEE_ADDR = "0x325744be57db298C2652c672B32Eb12875d92D83"
#: test-vectors.md C2: the signed response text and its signature by ``MOCK_TEE_KEY``.
C2_TEXT = (
    "798d46639491d6c18f1779ddfca7da4b672f23a4cb57d66eeae48d9b8ccb6075:"
    "c0993b73008754c78bb31f82dac937b4ce524866efb1605fc11853cdfd436013"
)
C2_SIG = (
    "0x173f5550c0ab24b6b6d88ed339992373c183bf44f848b20de29994965d2e611948bfeb3c94fd74be89b3ae7c"
    "bec3514f0d2da69e279c01fa9b037d5942b32b701c"
)


def key_hex(account) -> str:
    """``0x`` hex private key of an ``eth_account`` LocalAccount."""
    return "0x" + bytes(account.key).hex()


def devnet_owner(devnet):
    """The contract owner's ``eth_account`` LocalAccount (a dev account of the devnet)."""
    owner_key = next(
        a.private_key.get_secret_value()
        for a in devnet.accounts
        if a.address.lower() == devnet.owner.lower()
    )
    return Account.from_key(owner_key)


def devnet_gateway_settings(devnet, provider, tmp: Path, *, port: int | None = None, **fields):
    """``ProviderSettings`` of a gateway run by ``provider`` (an ``eth_account`` LocalAccount) on
    the session devnet: a ``chatbot`` service, no dstack socket (``tmp / "none.sock"``), its SQLite
    database at ``tmp / "gateway.db"`` and, with ``port``, served at ``http://127.0.0.1:{port}``.

    Args:
        fields: any other ``ProviderSettings`` field, or one of the above to override (``model``,
            prices in neuron per token, ``target_url``, ``tee_signer_key``, limits...).
    """
    from broker.provider.settings import ProviderSettings

    base: dict[str, Any] = {
        "rpc_url": devnet.rpc_url,
        "inference_address": devnet.inference_address,
        "private_key": key_hex(provider),
        "dstack_socket": tmp / "none.sock",
        "service_type": "chatbot",
        "db_url": f"sqlite:///{tmp / 'gateway.db'}",
    }
    if port is not None:
        base["serving_url"] = f"http://127.0.0.1:{port}"
    return ProviderSettings(**{**base, **fields})


def devnet_owner_contract(devnet) -> InferenceServingContract:
    """The inference contract with the devnet owner (:func:`devnet_owner`) as sender."""
    w3 = Web3(Web3.HTTPProvider(devnet.rpc_url))
    return InferenceServingContract(
        w3, devnet.inference_address, TransactionSender(w3, devnet_owner(devnet))
    )


def register_acknowledged_service(
    devnet, provider, settings, tee_signer_address: str
) -> InferenceServingContract:
    """Register the service that ``settings`` (a ``ProviderSettings``) describes, from
    ``provider`` (an ``eth_account`` LocalAccount with no service yet: ``register_service`` must
    answer ``"registered"``) with TEE signer ``tee_signer_address``, then have the devnet owner
    acknowledge that signer (``acknowledgeTEESignerByOwner``, contracts.md A3.3).

    Returns:
        The inference contract with ``provider`` as sender.

    Raises:
        AssertionError: the provider already had a service.
    """
    from broker.provider.register import acknowledge_tee_signer_by_owner, register_service

    w3 = Web3(Web3.HTTPProvider(devnet.rpc_url))
    contract = InferenceServingContract(
        w3, devnet.inference_address, TransactionSender(w3, provider)
    )
    assert register_service(contract, settings, tee_signer_address) == "registered"
    acknowledge_tee_signer_by_owner(devnet_owner_contract(devnet), provider.address)
    return contract


def register_teeml_service(
    devnet,
    url: str,
    *,
    service_type: str,
    model: str,
    input_price: int,
    output_price: int,
    tee_address: str | None = None,
    owner_ack: bool = False,
):
    """Register a ``TeeML`` service of ``service_type`` at ``url`` from a new provider funded with
    200 0G (stake 100 0G, ``additionalInfo`` ``{"ProviderType": "decentralized"}``; prices in
    neuron per token, or per image for images) whose TEE signer is ``tee_address`` (default: the
    provider's own address); with ``owner_ack`` the devnet owner acknowledges that signer.

    Returns:
        The provider's ``eth_account`` LocalAccount.
    """
    from broker.devnet import fund_new_account

    provider = fund_new_account(devnet, amount_neuron=200 * OG)
    w3 = Web3(Web3.HTTPProvider(devnet.rpc_url))
    contract = InferenceServingContract(
        w3, devnet.inference_address, TransactionSender(w3, provider)
    )
    info = json.dumps({"ProviderType": "decentralized"})
    signer = tee_address or provider.address
    contract.add_or_update_service(
        (service_type, url, model, "TeeML", input_price, output_price, info, signer),
        value=100 * OG,
    )
    if owner_ack:
        devnet_owner_contract(devnet).acknowledge_tee_signer_by_owner(provider.address)
    return provider


def register_chatbot_service(
    devnet,
    url: str,
    *,
    model: str,
    input_price: int,
    output_price: int,
    tee_address: str = MOCK_TEE_ADDR,
    owner_ack: bool = False,
):
    """:func:`register_teeml_service` of a ``chatbot`` service whose TEE signer is
    ``tee_address`` (default: the mock signer of test-vectors.md C2).

    Returns:
        The provider's ``eth_account`` LocalAccount.
    """
    return register_teeml_service(
        devnet,
        url,
        service_type="chatbot",
        model=model,
        input_price=input_price,
        output_price=output_price,
        tee_address=tee_address,
        owner_ack=owner_ack,
    )


def run_concurrently(
    fn: Callable[[Any], Any], items: Iterable[Any], *, join_timeout: float
) -> list[BaseException]:
    """Call ``fn(item)`` for every item, each in its own thread (all started, then all joined with
    ``join_timeout`` seconds each).

    Returns:
        The exceptions the calls raised (empty when all succeeded).
    """
    errors: list[BaseException] = []

    def run(item: Any) -> None:
        try:
            fn(item)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(item,)) for item in items]
    for t in threads:
        t.start()
    for t in threads:
        t.join(join_timeout)
    return errors


def settle_once_recording(gateway) -> tuple[Any, list]:
    """Run ``gateway.settler.settle_once()`` with an ``on_sent`` hook that collects the receipts of
    the settlement transactions (the hook is removed afterwards, even on error).

    Returns:
        ``(report, receipts)``.
    """
    receipts: list = []
    gateway.settler.on_sent = receipts.append
    try:
        report = gateway.settler.settle_once()
    finally:
        gateway.settler.on_sent = None
    return report, receipts


#: Gateway limits raised far above what a test sends (keyword arguments of ``Limits``).
RAISED_GATEWAY_LIMITS = {
    "per_ip_rps": 1000,
    "per_ip_burst": 1000,
    "per_user_rpm": 100000,
    "per_user_burst": 1000,
    "max_per_user_concurrent": 100,
    "max_global_concurrent": 200,
}


def devnet_user_broker(devnet, account):
    """A :class:`broker.broker.Broker` for ``account`` on the session devnet."""
    from broker.broker import create_broker

    return create_broker(
        key_hex(account),
        network="devnet",
        rpc_url=devnet.rpc_url,
        ledger_address=devnet.ledger_address,
        inference_address=devnet.inference_address,
    )


def funded_user_broker(devnet, ledger: int, amount_neuron: int = 100 * OG):
    """A broker for a new account funded with ``amount_neuron`` neuron and holding a ledger of
    ``ledger`` 0G."""
    from broker.devnet import fund_new_account

    broker = devnet_user_broker(devnet, fund_new_account(devnet, amount_neuron=amount_neuron))
    broker.ledger.add_ledger(ledger)
    return broker


@contextmanager
def provider_stack(devnet, home, *, raise_limits: bool = False, **stack_kwargs) -> Iterator[Any]:
    """``with provider_stack(devnet, home, **kw) as st:`` runs
    :func:`broker.stacks.start_provider_stack` (``home``, ``**kw``) for a new provider account
    funded with 1000 0G; ``raise_limits`` sets the gateway's limits to
    :data:`RAISED_GATEWAY_LIMITS`."""
    from broker.devnet import fund_new_account
    from broker.provider.limits import Limits
    from broker.stacks import start_provider_stack

    provider = fund_new_account(devnet, amount_neuron=1000 * OG)
    with start_provider_stack(
        devnet, provider_key=key_hex(provider), home=home, **stack_kwargs
    ) as st:
        if raise_limits:
            st.gateway.limits = Limits(**RAISED_GATEWAY_LIMITS)
        yield st
