"""The gateway's database on PostgreSQL (``postgres_url`` of ``tests/conftest.py``): exact
fees beyond 64 bits, async jobs billed exactly once under concurrency, signatures, a restart (new
engine), and the end-to-end settlement on the devnet with a real gateway on loopback (three images,
exact on-chain movement, a crash between sending and recording reconciled after a restart).
"""

from __future__ import annotations

import threading

import httpx
import pytest
from devnet_helpers import settle_once_recording
from sqlalchemy import inspect, select

from broker.chain.connection import connect
from broker.chain.contracts import InferenceServingContract, LedgerManagerContract
from broker.chain.sender import TransactionSender
from broker.inference.token import authorization_header, new_session_token, sign_session_token
from broker.provider.async_jobs import AsyncJobTracker
from broker.provider.billing import Fee, FeeLedger
from broker.provider.db import (
    BatchStatus,
    Database,
    RequestRecord,
    RequestStatus,
    SettlementBatch,
)
from broker.provider.signing import SignatureStore
from broker.provider.tee import LocalTeeSigner

USER = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
ZG = 10**18
PRICE = 10**16


def test_fee_ledger_jobs_and_signatures_survive_a_restart(postgres_url):
    db = Database(postgres_url)
    assert db.engine.dialect.name == "postgresql" and "postgresql" in repr(db)
    ledger = FeeLedger(db)
    huge = 2**70 + 3  # beyond 64-bit integers
    ledger.open_request("a" * 64, USER, "chatbot", "m")
    ledger.bill("a" * 64, Fee(10, 20, huge, 5))
    ledger.open_request("b" * 64, USER, "chatbot", "m")  # pending: counted, fee 0
    ledger.open_request("c" * 64, USER, "chatbot", "m")
    ledger.fail("c" * 64)  # never charged
    assert ledger.unsettled_fee(USER) == huge + 5
    assert ledger.users_with_unsettled() == [USER]

    tracker = AsyncJobTracker(db, ledger, output_price=PRICE)
    ledger.open_request("d" * 64, USER, "text-to-image", "tiny")
    tracker.register("job-1", "d" * 64, USER, 3)
    outcomes: list = []
    barrier = threading.Barrier(6)

    def observe() -> None:
        barrier.wait()
        outcomes.append(tracker.observe("job-1", 200, {"status": "completed"}))

    threads = [threading.Thread(target=observe) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert outcomes.count("billed") == 1 and outcomes.count(None) == 5  # billed exactly once
    assert ledger.unsettled_fee(USER) == huge + 5 + 3 * PRICE

    signer = LocalTeeSigner(bytes.fromhex("11" * 32))
    sigs = SignatureStore(db, signer)
    stored = sigs.sign_and_store("Chat-1", b'{"prompt":"x"}', b'{"data":[]}')
    sigs.sign_and_store("chat-1", b'{"prompt":"x"}', b'{"data":[]}')  # upsert, same key
    aliased = sigs.sign_and_store(
        "chat-2", b"{}", b'{"id":"cmpl-9"}', aliases=("Cmpl-9", "chat-2", "", "x" * 129)
    )
    db.dispose()

    again = Database(postgres_url)  # restart: nothing lost
    ledger2 = FeeLedger(again)
    assert ledger2.unsettled_fee(USER) == huge + 5 + 3 * PRICE
    assert AsyncJobTracker(again, ledger2, PRICE).pending() == []
    assert SignatureStore(again, signer).get("CHAT-1") == stored
    # the completion id finds the same signature (issue #12); unusable aliases are skipped
    assert (
        SignatureStore(again, signer).get("cmpl-9")
        == aliased
        == SignatureStore(again, signer).get("chat-2")
    )
    with again.session() as s:
        row = s.get(RequestRecord, "a" * 64)
        assert (row.fee, row.input_fee, row.status) == (
            str(huge + 5),
            str(huge),
            RequestStatus.UNSETTLED,
        )
        assert s.get(RequestRecord, "c" * 64).status == RequestStatus.FAILED
    columns = {c["name"]: c["type"] for c in inspect(again.engine).get_columns("requests")}
    assert columns["input_count"].python_type is int
    again.dispose()


# ---------------------------------------------------------------- end to end on the devnet


@pytest.fixture(scope="module")
def pg_stack(devnet, postgres_server, tmp_path_factory):
    """The devnet provider stack (tiny worker + gateway, registered and acknowledged) with its
    gateway restarted on a PostgreSQL database."""
    from broker.devnet import fund_new_account
    from broker.stacks import start_provider_stack

    provider = fund_new_account(devnet, 1000 * ZG)
    with start_provider_stack(
        devnet,
        provider_key="0x" + bytes(provider.key).hex(),
        price_per_image=PRICE,
        home=tmp_path_factory.mktemp("pg-stack"),
    ) as st:
        st.settings = st.settings.model_copy(
            update={"db_url": postgres_server.create_database("gateway")}
        )
        gw = st.restart_gateway()
        assert gw.db.engine.dialect.name == "postgresql"
        yield st


def _header(user, provider: str) -> dict[str, str]:
    tok = new_session_token(user.address, provider)
    return {"Authorization": authorization_header(sign_session_token(tok, user))}


class _Crash(BaseException):
    pass


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_settlement_end_to_end_on_postgres(pg_stack, devnet, fresh_account):
    from broker.provider.settlement import Settler

    user, provider = fresh_account, pg_stack.provider_address
    w3 = connect(devnet.rpc_url)
    LedgerManagerContract(w3, devnet.ledger_address, TransactionSender(w3, user)).add_ledger(
        "", 10 * ZG
    )
    LedgerManagerContract(w3, devnet.ledger_address, TransactionSender(w3, user)).transfer_fund(
        provider, "inference-v1.0", 5 * ZG
    )
    contract = InferenceServingContract(w3, devnet.inference_address)
    before = contract.get_account(user.address, provider).balance
    body = {
        "model": "tiny",
        "prompt": "a red cube",
        "n": 1,
        "size": "32x32",
        "num_inference_steps": 1,
        "seed": 7,
    }

    def generate() -> None:
        r = httpx.post(
            pg_stack.gateway_url + "/v1/proxy/images/generations",
            json=body,
            headers=_header(user, provider),
            timeout=120,
        )
        assert r.status_code == 200, r.text

    for _ in range(3):
        generate()
    gw = pg_stack.gateway
    fee = httpx.get(
        pg_stack.gateway_url + f"/v1/user/{user.address}/unsettledfee",
        headers=_header(user, provider),
        timeout=30,
    ).json()
    assert fee == {"userAddress": user.address, "unsettledFee": str(3 * PRICE)}

    wallet_before = w3.eth.get_balance(provider)
    report, receipts = settle_once_recording(gw)
    assert report.settled[user.address] == 3 * PRICE
    assert contract.get_account(user.address, provider).balance == before - 3 * PRICE
    gas = sum(r["gasUsed"] * r["effectiveGasPrice"] for r in receipts)
    assert w3.eth.get_balance(provider) == wallet_before + 3 * PRICE - gas
    assert gw.ledger.unsettled_fee(user.address) == 0
    with gw.db.session() as s:
        rows = s.scalars(select(RequestRecord).where(RequestRecord.user_address == user.address))
        assert sorted(r.status for r in rows) == [RequestStatus.SETTLED] * 3
        [batch] = s.scalars(
            select(SettlementBatch).where(SettlementBatch.user_address == user.address)
        ).all()
        assert (batch.status, batch.total_fee) == (BatchStatus.CONFIRMED, str(3 * PRICE))

    # crash after the transaction is mined, before the database records it; then a restart
    for _ in range(2):
        generate()
    before = contract.get_account(user.address, provider).balance

    def crash(_receipt):
        raise _Crash()

    crashing = Settler(
        gw.db, gw.settler.contract, gw.accounts, gw.signer, chain_id=w3.eth.chain_id, on_sent=crash
    )
    with pytest.raises(_Crash):
        crashing.settle_once()
    assert contract.get_account(user.address, provider).balance == before - 2 * PRICE
    assert gw.ledger.unsettled_fee(user.address) == 2 * PRICE  # paid, not yet recorded
    fresh = pg_stack.restart_gateway()  # reconciles at start-up
    assert fresh.ledger.unsettled_fee(user.address) == 0
    assert fresh.settler.settle_once().settled == {}  # nothing charged twice
    assert contract.get_account(user.address, provider).balance == before - 2 * PRICE
