"""``0g-broker provider register`` on the real devnet: it registers the service and, with
``--acknowledge-as-owner``, the devnet owner acknowledges the TEE signer (the steps of
:func:`broker.provider.register.register_and_acknowledge`, shared with the devnet's provider
stack); a second run sends nothing; without the flag the signer stays unacknowledged."""

from __future__ import annotations

import secrets

import pytest
from web3 import Web3

from broker.chain.contracts import InferenceServingContract

pytestmark = pytest.mark.timeout(120)

OG = 10**18


@pytest.fixture()
def provider_env(devnet, fresh_account, tmp_path):
    """``ZG_PROVIDER_*`` settings of a new provider wallet (1000 0G) on the session devnet."""
    return {
        "ZG_PROVIDER_NETWORK": "devnet",
        "ZG_PROVIDER_PRIVATE_KEY": "0x" + bytes(fresh_account.key).hex(),
        "ZG_PROVIDER_TEE_SIGNER_KEY": secrets.token_hex(32),
        "ZG_PROVIDER_DSTACK_SOCKET": str(tmp_path / "no-dstack.sock"),
        "ZG_PROVIDER_SERVING_URL": "http://127.0.0.1:9",
        "ZG_PROVIDER_MODEL": "register-test",
        "ZG_PROVIDER_OUTPUT_PRICE": str(10**15),
    }


def _service(devnet, provider: str):
    w3 = Web3(Web3.HTTPProvider(devnet.rpc_url))
    return InferenceServingContract(w3, devnet.inference_address).get_service(provider)


def _owner_nonce(devnet) -> int:
    return Web3(Web3.HTTPProvider(devnet.rpc_url)).eth.get_transaction_count(devnet.owner)


def test_register_and_acknowledge_as_owner_once(cli, devnet, fresh_account, provider_env):
    first = cli("provider", "register", "--acknowledge-as-owner", env=provider_env)
    assert first.exit_code == 0, first.output
    assert f"service registered: provider {fresh_account.address}" in first.stderr
    assert "TEE signer acknowledged by the contract owner" in first.stderr
    service = _service(devnet, fresh_account.address)
    assert service.tee_signer_acknowledged and service.model == "register-test"
    assert provider_env["ZG_PROVIDER_TEE_SIGNER_KEY"] not in first.output  # no secret printed

    nonce = _owner_nonce(devnet)
    again = cli("provider", "register", "--acknowledge-as-owner", env=provider_env)
    assert again.exit_code == 0, again.output
    assert "service unchanged" in again.stderr and "already acknowledged" in again.stderr
    assert _owner_nonce(devnet) == nonce  # nothing sent the second time


def test_register_without_the_flag_leaves_the_signer_unacknowledged(
    cli, devnet, fresh_account, provider_env
):
    nonce = _owner_nonce(devnet)
    result = cli("provider", "register", env=provider_env)
    assert result.exit_code == 0, result.output
    assert "acknowledged" not in result.stderr
    assert not _service(devnet, fresh_account.address).tee_signer_acknowledged
    assert _owner_nonce(devnet) == nonce
