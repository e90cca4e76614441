"""What a client of a real gateway process (``0g-broker provider serve`` on loopback, the session
``devnet``, a registered chatbot service, a real SQLite file) can rely on when the gateway's
per-request writes are committed by its event loop (:meth:`SQLiteWriter.arun
<broker.sqlite_writer.SQLiteWriter.arun>`):

* an answer that reached the client has its fee and signature committed: the gateway killed with
  SIGKILL right after answers arrive, a restarted gateway serves every answered signature and
  counts every answered fee;
* a client that goes away while its fee waits for SQLite's write lock (held by another process)
  leaves a whole record: fee, signature and released slots, once the lock is free.

The chat backend runs in this process; on a request with the header ``x-test-hold-lock`` it takes
the gateway database's write lock (another connection, as another process would) before it
answers, so that the gateway's fee write must wait for it.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import threading
import time

import httpx
import pytest
from devnet_helpers import devnet_gateway_settings, register_acknowledged_service
from fastapi import FastAPI, Request
from server_helpers import UvicornThread, free_port

from broker.chain.connection import connect
from broker.chain.contracts import LedgerManagerContract
from broker.chain.sender import TransactionSender
from broker.inference.token_issuing import new_session_token
from broker.provider.db import RequestStatus
from broker.provider.tee import LocalTeeSigner
from broker.stacks.provider_stack import gateway_env
from broker.stacks.servers import LocalServer
from broker.wire.session_token import authorization_header, sign_session_token

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ZG = 10**18
PATH = "/v1/proxy/chat/completions"
BODY = {"model": "durable-model", "messages": [{"role": "user", "content": "hi"}]}
ANSWER = {
    "id": "chatcmpl-durable",
    "object": "chat.completion",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi there"}}],
    "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
}
INPUT_PRICE, OUTPUT_PRICE = 10**9, 2 * 10**9
FEE = 7 * INPUT_PRICE + 3 * OUTPUT_PRICE  # neuron, per answer


class _LockingBackend:
    """The chat backend; holds the gateway database's write lock when asked (see the module)."""

    def __init__(self, db_path) -> None:
        self.db_path = db_path
        self.holder: sqlite3.Connection | None = None
        self.held = threading.Event()
        self.app = FastAPI()
        self.app.post("/chat/completions")(self.chat)

    async def chat(self, request: Request) -> dict:
        if request.headers.get("x-test-hold-lock"):
            self.holder = sqlite3.connect(
                self.db_path, isolation_level=None, timeout=5, check_same_thread=False
            )
            self.holder.execute("BEGIN IMMEDIATE")
            self.held.set()
        return ANSWER

    def release(self) -> None:
        holder, self.holder = self.holder, None
        if holder is not None:
            holder.execute("ROLLBACK")
            holder.close()
        self.held.clear()


@pytest.fixture(scope="module")
def service(devnet, tmp_path_factory):
    """A registered chatbot service: ``start()`` runs a gateway process for it (same port and
    database each time), the backend runs for the module."""
    from broker.devnet import fund_new_account

    tmp = tmp_path_factory.mktemp("durable")
    provider = fund_new_account(devnet, amount_neuron=1000 * ZG)
    w3 = connect(devnet.rpc_url)
    port = free_port()
    db_path = tmp / "gateway.db"
    backend = _LockingBackend(db_path)
    with UvicornThread(backend.app, free_port()) as backend_server:
        settings = devnet_gateway_settings(
            devnet,
            provider,
            tmp,
            port=port,
            tee_signer_key="0x" + "55" * 32,
            model="durable-model",
            input_price=INPUT_PRICE,
            output_price=OUTPUT_PRICE,
            target_url=backend_server.url,
            db_url=f"sqlite:///{db_path}",
        )
        signer = LocalTeeSigner(bytes.fromhex("55" * 32))
        register_acknowledged_service(devnet, provider, settings, signer.address)
        base = {k: v for k, v in os.environ.items() if not k.startswith("ZG_PROVIDER_")}
        env = {
            **gateway_env(base, settings),
            "ZG_HOME": str(tmp / "home"),
            "ZG_PROVIDER_PER_IP_RPS": "1000000",
            "ZG_PROVIDER_PER_IP_BURST": "1000000",
            "ZG_PROVIDER_PER_USER_RPM": "1000000000",
            "ZG_PROVIDER_PER_USER_BURST": "1000000",
        }
        started: list[LocalServer] = []

        def start() -> LocalServer:
            server = LocalServer.in_process(
                ["provider", "serve", "--port", str(port), "--host", "127.0.0.1"],
                name="gateway",
                port=port,
                env=env,
                log=tmp / "gateway.log",
            )
            started.append(server)
            server.wait_healthy(60)
            return server

        try:
            yield {
                "start": start,
                "backend": backend,
                "db_path": db_path,
                "w3": w3,
                "devnet": devnet,
                "provider": provider,
            }
        finally:
            backend.release()
            for server in started:
                if server.alive:
                    os.kill(server.pid, signal.SIGKILL)


def _funded_header(service, user) -> dict[str, str]:
    w3 = service["w3"]
    ledger = LedgerManagerContract(
        w3, service["devnet"].ledger_address, TransactionSender(w3, user)
    )
    ledger.add_ledger("", 10 * ZG)
    ledger.transfer_fund(service["provider"].address, "inference-v1.0", 5 * ZG)
    tok = new_session_token(user.address, service["provider"].address)
    return {"Authorization": authorization_header(sign_session_token(tok, user))}


def _rows(db_path, user: str) -> list[tuple[str, str, str]]:
    with sqlite3.connect(db_path) as conn:
        return conn.execute(
            "SELECT request_hash, status, fee FROM requests WHERE lower(user_address) = ?",
            (user.lower(),),
        ).fetchall()


def _kill(server: LocalServer) -> None:
    os.kill(server.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while server.alive and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not server.alive


def test_a_client_gone_while_its_fee_waits_for_the_lock_leaves_a_whole_record(
    service, fresh_account
):
    """Attack: another process holds the database's write lock when the backend's answer
    arrives, and the client gives up (read timeout, connection closed) while the gateway's fee
    write waits for it. Once the lock is free the row is billed with the whole fee, its signature
    is served, and the user's slots are given back (the next request is answered)."""
    backend = service["backend"]
    gateway = service["start"]()
    try:
        headers = _funded_header(service, fresh_account)
        with httpx.Client(base_url=gateway.url, timeout=30) as c:
            warm = c.post(PATH, json=BODY, headers=headers)  # token and account now in memory
            assert warm.status_code == 200, warm.text
            with pytest.raises(httpx.ReadTimeout):
                c.post(
                    PATH,
                    json=BODY,
                    headers={**headers, "x-test-hold-lock": "1"},
                    timeout=httpx.Timeout(30, read=0.5),
                )
            assert backend.held.wait(10)  # the backend answered holding the lock
            waiting = _rows(service["db_path"], fresh_account.address)
            assert sorted(s for _h, s, _f in waiting) == [
                RequestStatus.PENDING,  # the fee is not written while the lock is held ...
                RequestStatus.UNSETTLED,
            ]
            time.sleep(0.3)
            backend.release()  # ... and is committed once it is free
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                rows = _rows(service["db_path"], fresh_account.address)
                if all(status == RequestStatus.UNSETTLED for _h, status, _f in rows):
                    break
                time.sleep(0.05)
            assert sorted((s, f) for _h, s, f in rows) == [(RequestStatus.UNSETTLED, str(FEE))] * 2
            gone = next(h for h, _s, _f in rows if h != warm.headers["zg-res-key"])
            sig = c.get(f"/v1/proxy/signature/{gone}", headers=headers)
            assert sig.status_code == 200 and sig.json()["signature"].startswith("0x")
            after = c.post(PATH, json=BODY, headers=headers)
            assert after.status_code == 200, after.text
            fee = c.get(f"/v1/user/{fresh_account.address}/unsettledfee", headers=headers)
            assert int(fee.json()["unsettledFee"]) == 3 * FEE
    finally:
        backend.release()
        _kill(gateway)


def test_answered_fees_survive_kill_9_of_the_gateway(service, fresh_account):
    """Attack: 4 clients bill through the gateway; it is killed with SIGKILL as soon as 120
    answers have arrived (others in flight). On restart every answered request is billed with
    its fee, the restarted gateway serves each answered signature as the client received it, and
    its unsettled fee counts at least every answered fee."""
    gateway = service["start"]()
    headers = _funded_header(service, fresh_account)
    answered: list[tuple[str, str]] = []  # (chat id, signature) as the client received them
    lock = threading.Lock()
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(base_url=gateway.url, timeout=10) as c:
            while not stop.is_set():
                try:
                    r = c.post(PATH, json=BODY, headers=headers)
                except httpx.HTTPError:
                    return  # the gateway is gone
                if r.status_code != 200:
                    return
                with lock:
                    answered.append((r.headers["zg-res-key"], r.headers["zg-res-signature"]))
                    if len(answered) >= 120 and not stop.is_set():
                        stop.set()
                        os.kill(gateway.pid, signal.SIGKILL)  # right after this answer arrived

    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    stop.set()
    if gateway.alive:
        _kill(gateway)
    assert len(answered) >= 120, "the clients did not get going"
    rows = {h: (s, f) for h, s, f in _rows(service["db_path"], fresh_account.address)}
    for chat_id, _sig in answered:
        assert rows[chat_id] == (RequestStatus.UNSETTLED, str(FEE))
    # requests in flight at the kill: pending (no fee yet) or billed whole, never anything else
    assert {v for v in rows.values()} <= {
        (RequestStatus.PENDING, "0"),
        (RequestStatus.UNSETTLED, str(FEE)),
    }
    billed = sum(1 for s, _f in rows.values() if s == RequestStatus.UNSETTLED)
    restarted = service["start"]()
    try:
        with httpx.Client(base_url=restarted.url, timeout=10) as c:
            for chat_id, sig in answered[:: max(1, len(answered) // 30)] + answered[-5:]:
                got = c.get(f"/v1/proxy/signature/{chat_id}", headers=headers)
                assert got.status_code == 200, got.text
                assert got.json()["signature"] == sig
            fee = c.get(f"/v1/user/{fresh_account.address}/unsettledfee", headers=headers)
            assert int(fee.json()["unsettledFee"]) == billed * FEE >= len(answered) * FEE
    finally:
        _kill(restarted)
