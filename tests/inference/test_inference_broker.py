"""InferenceBroker against the devnet (anvil + our contracts) and a loopback fake provider."""

from __future__ import annotations

import pytest
from devnet_helpers import C2_SIG, C2_TEXT, MOCK_TEE_ADDR, register_chatbot_service

from broker.inference import broker as broker_mod
from broker.inference.broker import InferenceBroker, is_session_rejection
from broker.inference.errors import (
    AccountNotFoundError,
    InvalidTokenIdError,
    ProviderModelsError,
    RevokeAcknowledgementError,
    SignerNotAcknowledgedError,
    TokenGenerationMismatchError,
    TokenRevokedError,
)
from broker.inference.fee_store import FeeStore
from broker.inference.response_signature import VerificationReason
from broker.wire.session_token import parse_authorization, verify_session_token

pytestmark = pytest.mark.timeout(180)

INPUT_PRICE, OUTPUT_PRICE = 10**9, 2 * 10**9


def _register_service(devnet, url: str, *, owner_ack: bool = True, model: str = "org/model v1"):
    return register_chatbot_service(
        devnet,
        url,
        model=model,
        input_price=INPUT_PRICE,
        output_price=OUTPUT_PRICE,
        tee_address=MOCK_TEE_ADDR,
        owner_ack=owner_ack,
    )


@pytest.fixture(scope="module")
def env(devnet, fake_provider_module, tmp_path_factory):
    """A registered, owner-acknowledged provider and a user with a 20 0G ledger."""
    from broker.broker import create_broker
    from broker.devnet import fund_new_account

    provider = _register_service(devnet, fake_provider_module.url)
    user = fund_new_account(devnet, amount_neuron=100 * 10**18)
    base = create_broker(
        "0x" + bytes(user.key).hex(), network="devnet", rpc_url=devnet.rpc_url,
        ledger_address=devnet.ledger_address, inference_address=devnet.inference_address,
    )  # fmt: skip
    base.ledger.add_ledger("20")
    db = tmp_path_factory.mktemp("inf") / "inference.db"
    inf = InferenceBroker.from_broker(base, fee_store=FeeStore(f"sqlite:///{db}"))
    yield {
        "provider": provider.address,
        "user": user,
        "broker": inf,
        "base": base,
        "db": db,
        "server": fake_provider_module,
    }
    inf.close()


def test_create_broker_fills_inference(env):
    assert env["base"].inference is not None
    assert isinstance(env["base"].inference, InferenceBroker)


def test_headers_require_acknowledgement_then_acknowledge_creates_sub_account(env):
    inf: InferenceBroker = env["broker"]
    provider = env["provider"]
    with pytest.raises(SignerNotAcknowledgedError, match="not acknowledged"):
        inf.get_request_headers(provider)
    result = inf.acknowledge_provider_signer(provider.lower())
    assert result.sub_account_created and result.transferred == 10**18
    # the deployed contract's addAccount auto-acknowledges (contracts.md A3), so no second tx
    assert result.already_acknowledged and result.tx is None
    again = inf.acknowledge_provider_signer(provider)
    assert again.already_acknowledged and not again.sub_account_created and again.tx is None
    account = inf.get_account(provider)
    assert account.acknowledged and account.balance == 10**18

    headers = inf.get_request_headers(provider)
    assert list(headers) == ["Authorization"]
    assert headers["Authorization"].startswith("Bearer app-sk-")
    parsed = verify_session_token(
        headers["Authorization"], provider_address=provider, account_generation=account.generation
    )
    assert parsed.token.address == env["user"].address and parsed.token.token_id == 255
    assert parsed.token.expires_at - parsed.token.timestamp == 86_400_000
    assert inf.get_request_headers(provider) == headers  # cached


def test_revoke_all_tokens_bumps_generation_and_refreshes_token(env):
    inf: InferenceBroker = env["broker"]
    provider = env["provider"]
    inf.acknowledge_provider_signer(provider)
    old = inf.get_request_headers(provider)["Authorization"]
    gen_before = inf.get_account(provider).generation
    inf.revoke_all_tokens(provider)
    account = inf.get_account(provider)
    assert account.generation == gen_before + 1
    with pytest.raises(TokenGenerationMismatchError):
        verify_session_token(old, provider_address=provider, account_generation=account.generation)
    new = inf.get_request_headers(provider)["Authorization"]
    assert parse_authorization(new).token.generation == account.generation
    verify_session_token(new, provider_address=provider, account_generation=account.generation)


def test_invalidate_session_forces_new_token(env):
    inf: InferenceBroker = env["broker"]
    provider = env["provider"]
    inf.acknowledge_provider_signer(provider)
    first = inf.get_request_headers(provider)
    inf.invalidate_session(provider)
    second = inf.get_request_headers(provider)
    assert first != second
    assert is_session_rejection(401) and is_session_rejection(
        400, '{"error":"validate session: x"}'
    )
    assert not is_session_rejection(400, "bad request") and not is_session_rejection(500)


def test_get_secret_ids_persist_and_revocation(env):
    inf: InferenceBroker = env["broker"]
    provider = env["provider"]
    inf.acknowledge_provider_signer(provider)
    gen = inf.get_account(provider).generation
    k1 = inf.get_secret(provider)
    k2 = inf.get_secret(provider, duration=60_000)
    assert (k1.token_id, k2.token_id) == (0, 1)
    assert k1.expires_at == 0 and k2.expires_at == k2.created_at + 60_000
    assert "app-sk" not in repr(k1)
    verify_session_token(
        k1.raw_token, provider_address=provider, account_generation=gen, require_bearer=False
    )

    inf.revoke_token(provider, 1)
    account = inf.get_account(provider)
    assert account.revoked_bitmap == 0b10
    with pytest.raises(TokenRevokedError):
        verify_session_token(
            k2.raw_token,
            provider_address=provider,
            account_generation=gen,
            revoked_bitmap=account.revoked_bitmap,
            require_bearer=False,
        )
    with pytest.raises(InvalidTokenIdError, match="already revoked"):
        inf.get_secret(provider, token_id=1)
    with pytest.raises(InvalidTokenIdError, match="Cannot revoke ephemeral"):
        inf.revoke_token(provider, 255)
    with pytest.raises(InvalidTokenIdError, match="between 0 and 254"):
        inf.get_secret(provider, token_id=300)

    # a new broker (fresh process) on the same database continues after the issued ids
    again = InferenceBroker.from_broker(env["base"], fee_store=FeeStore(f"sqlite:///{env['db']}"))
    assert again.get_secret(provider).token_id == 2
    again.close()
    # a generation bump frees the ids again
    inf.revoke_all_tokens(provider)
    assert inf.get_secret(provider).token_id == 0


def test_process_response_verifies_and_records_fees(env):
    inf: InferenceBroker = env["broker"]
    provider = env["provider"]
    server = env["server"]
    server.set_signature("chat-1", 200, {"text": C2_TEXT, "signature": C2_SIG})
    before = inf.fee_store.get_totals(env["user"].address, provider)
    usage = '{"prompt_tokens":10,"completion_tokens":5}'
    assert inf.process_response(provider, "chat-1", usage) is True
    totals = inf.fee_store.get_totals(env["user"].address, provider)
    assert totals.cached_fee - before.cached_fee == 10 * INPUT_PRICE + 5 * OUTPUT_PRICE
    assert inf.process_response(provider, None, usage) is None
    server.set_signature("chat-2", 400, {"error": "Chat id not found or expired"})
    result = inf.process_response_detailed(provider, "chat-2")
    assert (result.verified, result.reason) == (False, VerificationReason.SIGNATURE_UNAVAILABLE)
    recent = inf.fee_store.recent_verifications(provider=provider)
    assert [r.chat_id for r in recent[:2]] == ["chat-2", "chat-1"]
    # right after a stream the provider may not have stored the signature yet: retried briefly
    server.queue_signature("chat-3", 400, {"error": "Chat id not found or expired"})
    server.set_signature("chat-3", 200, {"text": C2_TEXT, "signature": C2_SIG})
    assert inf.process_response(provider, "chat-3", usage) is True
    assert sum(1 for path, _ in server.requests if "/signature/chat-3?" in path) == 2


def test_discovery_metadata_models_and_paging(env, devnet, monkeypatch):
    inf: InferenceBroker = env["broker"]
    provider = env["provider"]
    server = env["server"]
    unacked = _register_service(devnet, server.url + "/", owner_ack=False, model="other")
    monkeypatch.setattr(broker_mod, "PAGE_LIMIT", 1)  # force several pages
    every = {s.provider for s in inf.list_service(include_unacknowledged=True)}
    assert {provider, unacked.address} <= every
    acked = {s.provider for s in inf.list_service()}
    assert provider in acked and unacked.address not in acked

    meta = inf.get_service_metadata(provider)
    assert meta.endpoint == server.url + "/v1/proxy" and meta.model == "org/model v1"
    assert inf.get_service_metadata(provider, "m2").model == "m2"

    server.responses["/v1/models"] = (
        200,
        {"object": "list", "data": [{"id": "org/model v1"}, {"id": "m2", "x": 1}]},
    )
    models = inf.get_provider_models(provider)
    assert [m.id for m in models.models] == ["org/model v1", "m2"]
    assert models.default_model == "org/model v1" and models.multi_model is False
    server.responses["/v1/models"] = (200, {"error": "nope"})
    with pytest.raises(ProviderModelsError):
        inf.get_provider_models(provider)

    status = inf.check_provider_signer_status(unacked.address, create_sub_account=False)
    assert status.is_acknowledged is False and status.sub_account_created is False
    status = inf.check_provider_signer_status(provider)
    assert status.is_acknowledged and status.tee_signer_address == MOCK_TEE_ADDR


def test_accounts_detail_and_revoke_acknowledgement(env):
    inf: InferenceBroker = env["broker"]
    provider = env["provider"]
    inf.acknowledge_provider_signer(provider)
    detail = inf.get_account_with_detail(provider)
    assert detail.account.balance >= 10**18 and detail.refunds == ()
    assert provider in {a.provider for a in inf.list_account()}
    with pytest.raises(RevokeAcknowledgementError, match="balance is not zero"):
        inf.revoke_acknowledge_provider_signer(provider)
    with pytest.raises(AccountNotFoundError):
        inf.get_account("0x" + "12" * 20)
