"""A provider swaps its TEE signer for a key outside any TEE after the contract owner
acknowledged the first one (attack on the trust chain: contracts.md ``addOrUpdateService`` resets
``teeSignerAcknowledged`` when ``teeSignerAddress`` changes). Against the devnet, a loopback fake
provider and the user's real InferenceBroker: the user side must stop verifying its responses at
once, even with the old service still in its cache."""

from __future__ import annotations

import json

import pytest
from devnet_helpers import C2_SIG, C2_TEXT, OG, register_chatbot_service
from eth_account import Account
from eth_account.messages import encode_defunct
from web3 import Web3

from broker.chain.contracts import InferenceServingContract
from broker.chain.sender import TransactionSender
from broker.inference.broker import InferenceBroker
from broker.inference.fee_store import FeeStore
from broker.inference.response_signature import VerificationReason

pytestmark = pytest.mark.timeout(180)


def test_swapped_signer_is_refused_even_with_a_cached_service(devnet, fake_provider, tmp_path):
    from broker.broker import create_broker
    from broker.devnet import fund_new_account

    provider = register_chatbot_service(
        devnet, fake_provider.url, model="m", input_price=1, output_price=1, owner_ack=True
    )
    user = fund_new_account(devnet, amount_neuron=10 * OG)
    base = create_broker(
        "0x" + bytes(user.key).hex(), network="devnet", rpc_url=devnet.rpc_url,
        ledger_address=devnet.ledger_address, inference_address=devnet.inference_address,
    )  # fmt: skip
    inf = InferenceBroker.from_broker(base, fee_store=FeeStore(f"sqlite:///{tmp_path}/f.db"))
    try:
        fake_provider.set_signature("before", 200, {"text": C2_TEXT, "signature": C2_SIG})
        assert inf.process_response(provider.address, "before") is True  # service now cached

        rogue = Account.create()
        w3 = Web3(Web3.HTTPProvider(devnet.rpc_url))
        contract = InferenceServingContract(
            w3, devnet.inference_address, TransactionSender(w3, provider)
        )
        info = json.dumps({"ProviderType": "decentralized"})
        contract.add_or_update_service(
            ("chatbot", fake_provider.url, "m", "TeeML", 1, 1, info, rogue.address)
        )
        assert contract.get_service(provider.address).tee_signer_acknowledged is False

        forged = Account.sign_message(encode_defunct(text=C2_TEXT), rogue.key).signature
        fake_provider.set_signature("after", 200, {"text": C2_TEXT, "signature": forged.hex()})
        result = inf.process_response_detailed(provider.address, "after")
        assert (result.verified, result.reason) == (
            False,
            VerificationReason.SIGNER_NOT_ACKNOWLEDGED,
        )
        # the old TEE key's signatures do not verify either: its signer is no longer on chain
        fake_provider.set_signature("old-key", 200, {"text": C2_TEXT, "signature": C2_SIG})
        assert inf.process_response(provider.address, "old-key") is False
    finally:
        inf.close()
