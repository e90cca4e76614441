"""The gateway's per-request write path: the SQLite group-commit writer, the in-memory outstanding
fees and the one-commit fee + signature record (real SQLite files, a real writer thread, a real
process killed with SIGKILL)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from broker.provider.billing import FeeLedger
from broker.provider.db import RequestRecord, RequestStatus, open_database
from broker.provider.gateway import Gateway
from broker.provider.outstanding import OutstandingFees
from broker.provider.signing import SignatureStore, response_signature_text
from broker.provider.tee import LocalTeeSigner
from broker.sqlite_writer import SQLiteWriter
from broker.wire.fees import Fee

USER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
OTHER = "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC"
KEY = bytes.fromhex("4c0883a69102937d6231471b5dbb6204fe512961708279b7e1a8d7d7a3c2b9e3")


def _gateway(url: str) -> Gateway:
    db = open_database(url)
    signer = LocalTeeSigner(KEY)
    return Gateway(
        settings=None,
        provider=OTHER,
        signer=signer,
        db=db,
        ledger=FeeLedger(db),
        signatures=SignatureStore(db, signer),
        accounts=None,
        auth=None,
        limits=None,
    )


def _status(db, rid: str) -> tuple[str, str]:
    with db.session() as s:
        row = s.get(RequestRecord, rid)
        return row.status, row.fee


def _acks_until_kill_9(script: str, *args: str, want: int) -> list[str]:
    """Run ``python -c script *args`` and read the lines it prints (one per acknowledged request)
    until ``want`` of them or 60 s, then kill -9 it.

    Returns:
        The lines read, stripped.
    """
    proc = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    lines: list[str] = []
    deadline = time.monotonic() + 60
    try:
        while len(lines) < want and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line.strip())
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    return lines


def _assert_billed_rows_cover(gw: Gateway, acked: list[str]) -> None:
    """Billed rows beyond the acknowledged ones may exist (committed, not yet printed), never
    fewer; the in-memory total of ``USER`` (fee 7 a request) equals the stored sum."""
    with gw.db.engine.connect() as conn:
        billed = conn.exec_driver_sql(
            "SELECT count(*) FROM requests WHERE status = 'unsettled'"
        ).scalar()
    assert billed >= len(acked)
    assert gw.ledger.unsettled_fee(USER) == 7 * billed


# ---------------------------------------------------------------------------------- the writer


def test_writer_isolates_a_failing_write_and_groups_commits(tmp_path):
    """Attack: one write of a group raises. It changes nothing and fails alone; the writes queued
    with it are committed, and writes that arrive together share commits."""
    path = str(tmp_path / "w.db")
    setup = sqlite3.connect(path)
    setup.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)")
    setup.commit()
    setup.close()
    writer = SQLiteWriter(path)
    gate, started = threading.Event(), threading.Event()

    def blocker(conn):  # holds the writer so that the next writes queue up into one group
        started.set()
        gate.wait(10)

    first = writer.submit(blocker)
    assert started.wait(10)

    def put(k, v):
        def op(conn):
            conn.execute("INSERT INTO t VALUES (?, ?)", (k, v))
            if k == "bad":
                raise ValueError("refused")
            return k

        return op

    futures = [writer.submit(put(f"k{i}", i)) for i in range(20)]
    bad = writer.submit(put("bad", 99))
    dup = writer.submit(put("k0", 0))  # primary key clash: sqlite3.IntegrityError
    gate.set()
    first.result(10)
    assert [f.result(10) for f in futures] == [f"k{i}" for i in range(20)]
    with pytest.raises(ValueError, match="refused"):
        bad.result(10)
    with pytest.raises(sqlite3.IntegrityError):
        dup.result(10)
    assert writer.commits == 2  # the blocker's group, then the 22 queued writes together
    writer.close()
    check = sqlite3.connect(path)
    rows = dict(check.execute("SELECT k, v FROM t").fetchall())
    check.close()
    assert rows == {f"k{i}": i for i in range(20)}  # nothing of "bad", k0 kept once


def test_writer_skips_a_cancelled_write_and_refuses_after_close(tmp_path):
    path = str(tmp_path / "c.db")
    writer = SQLiteWriter(path)
    gate = threading.Event()
    writer.submit(lambda conn: gate.wait(10))
    ran = []
    cancelled = writer.submit(lambda conn: ran.append(1))
    assert cancelled.cancel()  # not begun yet
    gate.set()
    assert writer.submit(lambda conn: 7).result(10) == 7
    assert ran == []
    writer.close()
    with pytest.raises(RuntimeError, match="closed"):
        writer.submit(lambda conn: None)


def test_writer_checkpoints_soon_after_a_commit_even_when_idle(tmp_path):
    """The power-loss window is bounded in time: a commit followed by silence is checkpointed
    (fsynced into the database file) within the interval, not only after ~1000 WAL pages."""
    path = str(tmp_path / "p.db")
    writer = SQLiteWriter(path, checkpoint_interval=0.2)
    writer.run(lambda conn: conn.execute("CREATE TABLE t (v INTEGER)"))
    writer.run(lambda conn: conn.execute("INSERT INTO t VALUES (1)"))
    deadline = time.monotonic() + 5
    while writer.checkpoints == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert writer.checkpoints >= 1
    settled = writer.checkpoints
    time.sleep(0.5)
    assert writer.checkpoints == settled  # nothing new committed: no more checkpoints
    writer.close()


# ---------------------------------------------------------------------------------- outstanding


def test_outstanding_load_overlapping_a_write_is_not_kept():
    """Attack: a bill commits while the total is being loaded. The load's answer is used once but
    not kept, so the bill is never counted twice (or lost) afterwards."""
    out = OutstandingFees()
    db_total = {"v": 100}
    out.begin(USER)  # a bill in flight

    def load(_user):
        db_total["v"] += 5  # ... commits during the load (the load may see it)
        return db_total["v"]

    assert out.get(USER, load) == 105
    out.end(USER, 5)
    assert out.get(USER, lambda _u: 105) == 105  # loaded again, not 105 + 5
    assert out.get(USER, lambda _u: pytest.fail("kept total not used")) == 105
    out.begin(USER)
    out.end(USER, 7)
    assert out.get(USER.lower(), lambda _u: pytest.fail("kept total not used")) == 112
    out.forget(USER)
    assert out.get(USER, lambda _u: 3) == 3
    out.forget()
    assert out.get(USER, lambda _u: 4) == 4


def test_outstanding_expires_after_ttl():
    out = OutstandingFees(ttl=0.05)
    assert out.get(USER, lambda _u: 1) == 1
    assert out.get(USER, lambda _u: 2) == 1
    time.sleep(0.06)
    assert out.get(USER, lambda _u: 2) == 2


def test_ledger_total_in_memory_matches_the_database(tmp_path):
    """Bills, failures, a bill of a request opened by another ledger (a restart) and concurrent
    bills from 8 threads: the in-memory total always equals the database's sum."""
    gw = _gateway(f"sqlite:///{tmp_path / 'g.db'}")
    ledger, db = gw.ledger, gw.db
    assert db.outstanding is not None
    assert ledger.unsettled_fee(USER) == 0  # loaded (0) and kept
    ledger.open_request("a", USER, "chatbot", "m")
    ledger.bill("a", Fee(1, 2, 3, 2**70))
    ledger.open_request("b", USER, "chatbot", "m")
    ledger.fail("b")
    assert ledger.unsettled_fee(USER) == 3 + 2**70 == ledger.stored_unsettled_fee(USER)
    # opened by an earlier process: this ledger does not know the user, it reads it from the row
    FeeLedger(db).open_request("c", USER, "chatbot", "m")
    ledger.bill("c", Fee(0, 1, 0, 11))
    assert ledger.unsettled_fee(USER) == 14 + 2**70 == ledger.stored_unsettled_fee(USER)

    def one(i: int) -> None:
        rid = f"p{i}"
        ledger.open_request(rid, USER if i % 2 else OTHER, "chatbot", "m")
        ledger.unsettled_fee(USER)
        if i % 5 == 0:
            ledger.fail(rid)
        else:
            gw.record_response(rid, b"q", b"r", fee=Fee(0, 1, 0, i), aliases=(f"cmpl-{i}",))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(one, range(200)))
    for user in (USER, OTHER):
        assert ledger.unsettled_fee(user) == ledger.stored_unsettled_fee(user)
    assert gw.signatures.get("CMPL-7").text == gw.signatures.get("p7").text
    db.dispose()


def test_settlement_forget_makes_the_gate_reload(tmp_path):
    """Rows paid by a settlement (another connection) leave the in-memory total once the settler
    forgets the user (as Settler._apply does after its commit)."""
    gw = _gateway(f"sqlite:///{tmp_path / 's.db'}")
    gw.ledger.open_request("x", USER, "chatbot", "m")
    gw.ledger.bill("x", Fee(0, 1, 0, 50))
    assert gw.ledger.unsettled_fee(USER) == 50
    with gw.db.session.begin() as s:
        s.get(RequestRecord, "x").status = RequestStatus.SETTLED
    gw.db.outstanding.forget(USER)
    assert gw.ledger.unsettled_fee(USER) == 0
    gw.db.dispose()


# ---------------------------------------------------------------------------------- kill -9

_KILL_WRITER = r"""
import sys, threading
from broker.provider.billing import FeeLedger
from broker.wire.fees import Fee
from broker.provider.db import open_database
from broker.provider.gateway import Gateway
from broker.provider.signing import SignatureStore, response_signature_text
from broker.provider.tee import LocalTeeSigner

db = open_database(sys.argv[1])
signer = LocalTeeSigner(bytes.fromhex(sys.argv[2]))
gw = Gateway(settings=None, provider="0x", signer=signer, db=db, ledger=FeeLedger(db),
             signatures=SignatureStore(db, signer), accounts=None, auth=None, limits=None)
lock = threading.Lock()

def client(t):
    for i in range(100000):
        rid = f"t{t}-{i}"
        gw.ledger.open_request(rid, sys.argv[3], "chatbot", "m")
        gw.record_response(rid, b"req", rid.encode(), fee=Fee(0, 1, 0, 7))
        with lock:
            print(rid, flush=True)       # acknowledged: the response would be released now

for t in range(4):
    threading.Thread(target=client, args=(t,), daemon=True).start()
threading.Event().wait()
"""


def test_acknowledged_fee_and_signature_survive_kill_9(tmp_path):
    """Attack: kill -9 the process while 4 clients bill through the group-commit writer. Every
    request acknowledged before the kill has its fee (``unsettled``) and its signature in the
    file, which opens cleanly; the in-memory total of a new process equals the stored sum."""
    url = f"sqlite:///{tmp_path / 'k.db'}"
    acked = _acks_until_kill_9(_KILL_WRITER, url, KEY.hex(), USER, want=200)
    assert len(acked) >= 200, "the writers did not get going"
    gw = _gateway(url)
    signer = LocalTeeSigner(KEY)
    for rid in acked:
        assert _status(gw.db, rid) == (RequestStatus.UNSETTLED, "7")
        sig = gw.signatures.get(rid)
        assert sig.text == response_signature_text(b"req", rid.encode())
        assert sig.signature == signer.sign_text(sig.text)
    _assert_billed_rows_cover(gw, acked)
    gw.db.dispose()


_KILL_ASYNC = r"""
import asyncio, sys, threading
from broker.provider.billing import FeeLedger
from broker.wire.fees import Fee
from broker.provider.db import open_database
from broker.provider.gateway import Gateway
from broker.provider.signing import SignatureStore
from broker.provider.tee import LocalTeeSigner

db = open_database(sys.argv[1])
signer = LocalTeeSigner(bytes.fromhex(sys.argv[2]))
user = sys.argv[3]
gw = Gateway(settings=None, provider="0x", signer=signer, db=db, ledger=FeeLedger(db),
             signatures=SignatureStore(db, signer), accounts=None, auth=None, limits=None)
lock = threading.Lock()

def ack(rid):                            # acknowledged: the response would be released now
    with lock:
        sys.stdout.write(f"{rid} {db.writer.inline_commits}\n")
        sys.stdout.flush()

def thread_client(t):                    # through the writer thread's queue
    for i in range(100000):
        rid = f"t{t}-{i}"
        gw.ledger.open_request(rid, user, "chatbot", "m")
        gw.record_response(rid, b"req", rid.encode(), fee=Fee(0, 1, 0, 7), user=user)
        ack(rid)

async def loop_client(t):                # on the event loop: inline when the writer is idle
    for i in range(100000):
        rid = f"a{t}-{i}"
        await gw.ledger.open_request_async(rid, user, "chatbot", "m")
        await gw.record_response_async(rid, b"req", rid.encode(), fee=Fee(0, 1, 0, 7), user=user)
        ack(rid)

async def main():
    for t in range(int(sys.argv[4])):
        threading.Thread(target=thread_client, args=(t,), daemon=True).start()
    await asyncio.gather(*(loop_client(t) for t in range(4)))

asyncio.run(main())
"""


@pytest.mark.parametrize("threads", [0, 2])
def test_acknowledged_async_fee_survives_kill_9(tmp_path, threads):
    """Attack: kill -9 the process while 4 event-loop clients bill through ``arun`` (alone:
    committed inline on the loop; with 2 thread clients beside them: some inline, some through
    the writer's queue). Every request acknowledged before the kill has its fee and signature in
    the file; the in-memory total of a new process equals the stored sum."""
    url = f"sqlite:///{tmp_path / 'ka.db'}"
    lines = _acks_until_kill_9(_KILL_ASYNC, url, KEY.hex(), USER, str(threads), want=300)
    acked = [line.split()[0] for line in lines]  # "rid inline-commits-so-far"
    inline = int(lines[-1].split()[1]) if lines else 0
    assert len(acked) >= 300, "the clients did not get going"
    assert inline > 0  # the loop's clients committed inline
    assert any(rid.startswith("a") for rid in acked)
    if threads:
        assert any(rid.startswith("t") for rid in acked)
    gw = _gateway(url)
    for rid in acked:
        assert _status(gw.db, rid) == (RequestStatus.UNSETTLED, "7")
        assert gw.signatures.get(rid).text == response_signature_text(b"req", rid.encode())
    _assert_billed_rows_cover(gw, acked)
    gw.db.dispose()


# ---------------------------------------------------------------------------------- async path


def test_async_writes_commit_even_when_the_caller_is_cancelled(tmp_path):
    """Attack: the client goes away while its fee is being committed (the awaiting task is
    cancelled). The fee and signature asked for are committed all the same, and the in-memory
    total stays equal to the database's sum."""
    import asyncio

    gw = _gateway(f"sqlite:///{tmp_path / 'a.db'}")

    async def scenario() -> None:
        await gw.ledger.open_request_async("r1", USER, "chatbot", "m")
        assert gw.ledger.unsettled_fee_cached(USER) is None  # not loaded yet
        assert gw.ledger.unsettled_fee(USER) == 0
        assert gw.ledger.unsettled_fee_cached(USER) == 0
        gate = threading.Event()
        blocker = gw.db.writer.submit(lambda conn: gate.wait(10))  # the writer is busy
        task = asyncio.create_task(
            gw.record_response_async("r1", b"q", b"r", fee=Fee(0, 1, 0, 9), user=USER)
        )
        await asyncio.sleep(0.05)
        task.cancel()
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wrap_future(blocker)
        await gw.ledger.open_request_async("r2", USER, "chatbot", "m")  # after r1's commit
        await gw.ledger.fail_async("r2")

    asyncio.run(scenario())
    assert _status(gw.db, "r1") == (RequestStatus.UNSETTLED, "9")
    assert _status(gw.db, "r2")[0] == RequestStatus.FAILED
    assert gw.signatures.get("r1").text == response_signature_text(b"q", b"r")
    assert gw.ledger.unsettled_fee(USER) == 9 == gw.ledger.stored_unsettled_fee(USER)
    gw.db.dispose()


def test_in_memory_admission_matches_the_chain_checks(devnet, fresh_account, tmp_path):
    """The event-loop admission (:meth:`Gateway.admit`) answers from memory only what the full
    checks would answer: a token never verified, an account dropped from the cache (what the
    revocation watcher does) or a balance that does not cover the fees go the full way; refusals
    keep their errors and hold no slot."""
    import asyncio

    from devnet_helpers import devnet_gateway_settings, register_acknowledged_service

    from broker.chain.connection import connect
    from broker.chain.contracts import LedgerManagerContract
    from broker.chain.sender import TransactionSender
    from broker.devnet import fund_new_account
    from broker.inference.token_issuing import new_session_token
    from broker.provider.errors import RequestValidationError, SessionValidationError
    from broker.provider.serve import build_gateway
    from broker.wire.session_token import authorization_header, sign_session_token

    zg = 10**18
    provider = fund_new_account(devnet, amount_neuron=1000 * zg)
    w3 = connect(devnet.rpc_url)
    settings = devnet_gateway_settings(
        devnet,
        provider,
        tmp_path,
        port=9,
        tee_signer_key="0x" + "31" * 32,
        model="m",
        per_user_rpm=100_000,
        per_user_burst=1000,
    )
    signer = LocalTeeSigner(bytes.fromhex("31" * 32))
    register_acknowledged_service(devnet, provider, settings, signer.address)
    user = fresh_account
    ledger = LedgerManagerContract(w3, devnet.ledger_address, TransactionSender(w3, user))
    ledger.add_ledger("", 10 * zg)
    ledger.transfer_fund(provider.address, "inference-v1.0", 3 * zg)
    gw = build_gateway(settings, signer=signer, with_scheduler=False)
    header = authorization_header(
        sign_session_token(new_session_token(user.address, provider.address), user)
    )
    auth = gw.auth
    try:
        assert auth.authenticate_cached(header) is None  # never verified: full checks
        assert asyncio.run(gw.admit(header, "a1"))[0] == user.address  # (in a worker thread)
        assert auth.authenticate_cached(header) == user.address
        locked = auth.check_account_cached(user.address, unsettled_fee=0)
        assert locked == 3 * zg
        # the reserve (1 0G) plus fees beyond the locked balance: not answered from memory ...
        assert auth.check_account_cached(user.address, unsettled_fee=2 * zg + 1) is None
        with pytest.raises(RequestValidationError, match="insufficient balance"):
            auth.check_account(user.address, unsettled_fee=2 * zg + 1)  # ... refused in full
        # in memory now: the fast path answers, and writes the pending row
        assert gw.ledger.unsettled_fee_cached(user.address) == 0
        assert asyncio.run(gw.admit(header, "a2")) == (user.address, 3 * zg, 0)
        assert _status(gw.db, "a2") == (RequestStatus.PENDING, "0")
        # the account dropped (a revocation): no answer from memory until read again
        gw.accounts.invalidate(user.address)
        assert auth.authenticate_cached(header) is None
        assert auth.check_account_cached(user.address, unsettled_fee=0) is None
        forged = authorization_header(
            sign_session_token(
                new_session_token(user.address, provider.address), fund_new_account(devnet, 1)
            )
        )
        held = gw.limits.user_inflight.count(user.address.lower())
        assert held == 2  # a1 and a2 hold theirs
        with pytest.raises(SessionValidationError):
            asyncio.run(gw.admit(forged, "a3"))
        assert gw.limits.user_inflight.count(user.address.lower()) == held  # no slot held
        with gw.db.session() as s:
            assert s.get(RequestRecord, "a3") is None  # nothing written
    finally:
        gw.db.dispose()


def _hold_write_lock(path) -> sqlite3.Connection:
    """Another connection holding SQLite's write lock of ``path`` (as another process, or the
    settler's session, may): the gateway's writes wait in the writer's queue until it is
    released (``ROLLBACK``)."""
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    return holder


def test_async_writes_commit_inline_when_the_writer_is_idle(tmp_path):
    """On an idle writer the event loop commits the open, the fee + signature, a failure and an
    unbilled record itself (no hand-off to the writer thread), and each is in the file, seen by
    another connection, when its call returns; the in-memory total follows the commits."""
    import asyncio

    path = tmp_path / "i.db"
    gw = _gateway(f"sqlite:///{path}")
    writer = gw.db.writer

    def row(rid: str) -> tuple[str, str] | None:
        with sqlite3.connect(path) as conn:
            return conn.execute(
                "SELECT status, fee FROM requests WHERE request_hash = ?", (rid,)
            ).fetchone()

    async def scenario() -> None:
        assert gw.ledger.unsettled_fee(USER) == 0  # kept in memory from now on
        before = writer.inline_commits
        await gw.ledger.open_request_async("i1", USER, "chatbot", "m")
        assert row("i1") == (RequestStatus.PENDING, "0")
        await gw.record_response_async("i1", b"q", b"r1", fee=Fee(0, 1, 0, 5), user=USER)
        assert row("i1") == (RequestStatus.UNSETTLED, "5")
        await gw.ledger.open_request_async("i2", USER, "chatbot", "m")
        await gw.ledger.fail_async("i2", user=USER)
        assert row("i2") == (RequestStatus.FAILED, "0")
        await gw.record_response_async("w1", b"q", b"w", fee=None)  # whitelisted: not billed
        assert writer.inline_commits - before == 5
        assert gw.ledger.unsettled_fee_cached(USER) == 5

    asyncio.run(scenario())
    assert gw.signatures.get("i1").text == response_signature_text(b"q", b"r1")
    assert gw.signatures.get("w1").text == response_signature_text(b"q", b"w")
    assert gw.ledger.stored_unsettled_fee(USER) == 5
    gw.db.dispose()


def test_cancelled_writes_behind_a_held_lock_stay_consistent(tmp_path):
    """Attack: another connection holds SQLite's write lock, so the gateway's writes wait in the
    writer's queue; the client goes away (the awaiting tasks are cancelled) while its fee and a
    new request's open row wait, and the new request is failed at once. Once the lock is
    released: the fee and signature are committed whole, the open row is written before its
    failure (per-request order kept: it ends ``failed``, not ``pending``), and the in-memory
    total, dropped while unknown, reloads equal to the database's sum and is kept again (no
    write left marked in flight)."""
    import asyncio

    path = tmp_path / "l.db"
    gw = _gateway(f"sqlite:///{path}")
    writer = gw.db.writer

    async def scenario() -> None:
        await gw.ledger.open_request_async("r1", USER, "chatbot", "m")
        assert gw.ledger.unsettled_fee(USER) == 0
        inline = writer.inline_commits
        holder = _hold_write_lock(path)
        try:
            bill = asyncio.create_task(
                gw.record_response_async("r1", b"q", b"r", fee=Fee(0, 1, 0, 9), user=USER)
            )
            opened = asyncio.create_task(gw.ledger.open_request_async("r2", USER, "chatbot", "m"))
            await asyncio.sleep(0.1)
            assert not bill.done() and not opened.done()  # waiting for the lock
            bill.cancel()
            opened.cancel()
            failed = asyncio.create_task(gw.ledger.fail_async("r2", user=USER))
            await asyncio.sleep(0.05)
            assert not failed.done()
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        for task in (bill, opened):
            with pytest.raises(asyncio.CancelledError):
                await task
        await failed  # queued behind r2's open and r1's fee: both are applied now
        assert writer.inline_commits == inline  # none of them went inline past the queue

    asyncio.run(scenario())
    assert _status(gw.db, "r1") == (RequestStatus.UNSETTLED, "9")
    assert gw.signatures.get("r1").text == response_signature_text(b"q", b"r")
    assert _status(gw.db, "r2") == (RequestStatus.FAILED, "0")
    assert gw.ledger.unsettled_fee_cached(USER) is None  # dropped: the cancelled fee's outcome
    assert gw.ledger.unsettled_fee(USER) == 9 == gw.ledger.stored_unsettled_fee(USER)
    assert gw.ledger.unsettled_fee_cached(USER) == 9  # kept again
    gw.db.dispose()
