"""The generic SQLite group-commit writer (``broker.sqlite_writer``) in its savepoint-free mode,
with writes run alone between groups, and on its inline path (an async write committed by its
caller never overtakes a queued one; the WAL stays small) (real SQLite files, a real writer
thread). The savepoint mode is covered by ``tests/provider/test_gateway_write_queue.py``."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from broker.sqlite_writer import SQLiteWriter


def _table(path) -> None:
    setup = sqlite3.connect(path)
    setup.execute("CREATE TABLE t (k TEXT PRIMARY KEY, v INTEGER)")
    setup.commit()
    setup.close()


def _rows(path) -> dict:
    check = sqlite3.connect(path)
    rows = dict(check.execute("SELECT k, v FROM t").fetchall())
    check.close()
    return rows


def _hold(writer: SQLiteWriter) -> tuple[threading.Event, object]:
    """Occupy the writer, so that the next writes queue up into one group; set the event to let
    it go on."""
    gate, started = threading.Event(), threading.Event()

    def blocker(conn):
        started.set()
        gate.wait(10)

    first = writer.submit(blocker)
    assert started.wait(10)
    return gate, first


def _put(k: str, v: int):
    def op(conn):
        conn.execute("INSERT INTO t VALUES (?, ?)", (k, v))
        if k.startswith("bad"):
            raise ValueError("refused")
        return k

    return op


def test_group_without_savepoints_replays_when_a_write_fails(tmp_path):
    """Attack: one write of a savepoint-free group raises after writing. The group is rolled back
    and applied again with a savepoint per write: the failing write changes nothing and fails
    alone, the others are committed exactly once."""
    path = tmp_path / "r.db"
    _table(path)
    writer = SQLiteWriter(str(path), savepoints=False)
    gate, first = _hold(writer)
    good = [writer.submit(_put(f"k{i}", i)) for i in range(10)]
    bad = writer.submit(_put("bad", 99))
    dup = writer.submit(_put("k3", 3))  # primary key clash: sqlite3.IntegrityError
    more = [writer.submit(_put(f"m{i}", i)) for i in range(5)]
    gate.set()
    first.result(10)
    assert [f.result(10) for f in good + more] == [f"k{i}" for i in range(10)] + [
        f"m{i}" for i in range(5)
    ]
    with pytest.raises(ValueError, match="refused"):
        bad.result(10)
    with pytest.raises(sqlite3.IntegrityError):
        dup.result(10)
    assert (writer.commits, writer.replays) == (2, 1)
    writer.close()
    assert _rows(path) == {**{f"k{i}": i for i in range(10)}, **{f"m{i}": i for i in range(5)}}


def test_group_without_savepoints_commits_once_when_all_succeed(tmp_path):
    path = tmp_path / "g.db"
    _table(path)
    writer = SQLiteWriter(str(path), savepoints=False)
    gate, _first = _hold(writer)
    futures = [writer.submit(_put(f"k{i}", i)) for i in range(50)]
    gate.set()
    assert [f.result(10) for f in futures] == [f"k{i}" for i in range(50)]
    assert (writer.commits, writer.replays) == (2, 0)
    alone = writer.submit(_put("bad-alone", 1))  # a group of one: its rollback isolates it
    with pytest.raises(ValueError):
        alone.result(10)
    assert writer.replays == 0
    writer.close()
    assert len(_rows(path)) == 50 and "bad-alone" not in _rows(path)


def test_alone_write_runs_between_groups_in_queue_order(tmp_path):
    """A write through another connection runs on the writer thread after the group queued
    before it is committed (it sees those rows, it is not blocked by the writer's lock) and before
    the writes queued after it."""
    path = tmp_path / "a.db"
    _table(path)
    writer = SQLiteWriter(str(path), savepoints=False)
    gate, _first = _hold(writer)
    before = [writer.submit(_put(f"b{i}", i)) for i in range(3)]

    def other_connection():
        conn = sqlite3.connect(path, timeout=0.5)  # would time out if the writer held the lock
        try:
            conn.execute("INSERT INTO t VALUES ('alone', 0)")
            conn.commit()
            return sorted(k for (k,) in conn.execute("SELECT k FROM t"))
        finally:
            conn.close()

    alone = writer.submit_alone(other_connection)
    after = writer.submit(lambda conn: conn.execute("SELECT COUNT(*) FROM t").fetchone()[0])
    failing = writer.submit_alone(lambda: 1 / 0)
    gate.set()
    assert [f.result(10) for f in before] == ["b0", "b1", "b2"]
    assert alone.result(10) == ["alone", "b0", "b1", "b2"]
    assert after.result(10) == 4
    with pytest.raises(ZeroDivisionError):
        failing.result(10)
    assert writer.run_alone(lambda: threading.current_thread().name) == "sqlite-writer"
    writer.close()
    with pytest.raises(RuntimeError, match="closed"):
        writer.submit_alone(lambda: None)


@pytest.mark.parametrize("queued_kind", ["group", "alone"])
def test_an_inline_commit_never_overtakes_a_queued_write(tmp_path, queued_kind):
    """Attack: a write is queued (``submit``, or ``submit_alone`` through another connection; the
    writer thread has not applied it yet) and right after it an async caller's write finds the
    writer's lock free, before the writer thread has woken up. The later write must not be
    committed inline ahead of the queued one (the writer's count of writes queued and not yet
    applied sends it to the queue behind them): it sees the queued write committed, and the
    commits follow the order of the calls, every time."""
    import asyncio

    path = tmp_path / "o.db"
    _table(path)
    writer = SQLiteWriter(str(path))
    order: list[str] = []

    def put(name: str):
        def op(conn):
            seen = sorted(k for (k,) in conn.execute("SELECT k FROM t"))
            conn.execute("INSERT INTO t VALUES (?, ?)", (name, len(order)))
            order.append(name)
            return seen

        return op

    def put_alone(name: str):
        def fn():
            conn = sqlite3.connect(path, timeout=5)
            try:
                seen = put(name)(conn)
                conn.commit()
                return seen
            finally:
                conn.close()

        return fn

    async def queued_then_inline(i: int) -> tuple[list, list]:
        # the writer thread is asleep: the queued write is not applied yet when arun() is called
        if queued_kind == "group":
            queued = writer.submit(put(f"q{i}"))
        else:
            queued = writer.submit_alone(put_alone(f"q{i}"))
        later = await writer.arun(put(f"a{i}"))
        return queued.result(10), later

    rounds = 30
    for i in range(rounds):
        seen_by_queued, seen_by_later = asyncio.run(queued_then_inline(i))
        assert f"a{i}" not in seen_by_queued and f"q{i}" in seen_by_later, (i, order)
    assert order == [name for i in range(rounds) for name in (f"q{i}", f"a{i}")]
    time.sleep(0.1)  # idle now: an async write commits inline again
    asyncio.run(writer.arun(put("idle")))
    assert writer.inline_commits >= 1 and order[-1] == "idle"
    writer.close()
    assert len(_rows(path)) == 2 * rounds + 1


def test_a_write_queued_during_an_inline_commit_is_committed(tmp_path):
    """Attack: another thread queues a write while an async caller commits inline (the first
    commit since a checkpoint, which leaves the writer a wake-up note in its queue behind that
    write). The queued write is committed, and the writer thread lives on."""
    import asyncio

    path = tmp_path / "m.db"
    _table(path)
    writer = SQLiteWriter(str(path))
    queued = []

    def inline(conn):
        conn.execute("INSERT INTO t VALUES ('inline', 1)")
        queued.append(writer.submit(_put("queued", 2)))  # (in effect another thread's write)
        return "inline"

    assert asyncio.run(writer.arun(inline)) == "inline"
    assert writer.inline_commits == 1
    assert queued[0].result(10) == "queued"
    assert writer.run(_put("after", 3)) == "after"
    writer.close()
    assert _rows(path) == {"inline": 1, "queued": 2, "after": 3}


def test_wal_stays_small_under_steady_inline_commits(tmp_path):
    """Attack: an event loop commits inline without pause (its connection never checkpoints).
    The writer checkpoints every :data:`CHECKPOINT_INLINE_COMMITS` commits, off the loop, and
    lets the WAL start over once it passes :data:`WAL_RESTART_FRAMES`: the WAL file stays near
    that size instead of holding a second of writes (a checkpoint racing steady writes alone
    would never let it start over)."""
    import asyncio
    import os

    from broker.sqlite_writer import CHECKPOINT_INLINE_COMMITS, WAL_RESTART_FRAMES

    path = tmp_path / "g.db"
    _table(path)
    writer = SQLiteWriter(str(path), checkpoint_interval=60)  # the clock never runs out here
    blob = "x" * 6000  # two pages and more per commit

    async def load() -> None:
        for i in range(12_000):
            await writer.arun(
                lambda conn, i=i: conn.execute("INSERT INTO t VALUES (?, ?)", (blob + str(i), i))
            )
            if i % 64 == 0:
                await asyncio.sleep(0)  # a loop that also serves requests

    asyncio.run(load())
    assert writer.inline_commits > 10_000  # (a few queued while a checkpoint held the lock)
    assert writer.checkpoints >= 12_000 // CHECKPOINT_INLINE_COMMITS // 2
    wal = os.path.getsize(f"{path}-wal")
    page = sqlite3.connect(path).execute("PRAGMA page_size").fetchone()[0]
    assert wal < 3 * WAL_RESTART_FRAMES * page, wal  # 12 000 commits wrote > 24 000 pages
    writer.close()
    assert len(_rows(path)) == 12_000
