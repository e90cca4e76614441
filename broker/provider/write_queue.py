"""One writer thread with group commit for the gateway's SQLite file (the per-request writes).

Every billed request writes twice: its ``pending`` row before forwarding and its fee plus response
signature before the response is released (:mod:`broker.provider.billing`,
:mod:`broker.provider.signing`). On SQLite these writes go through one :class:`SQLiteWriter` per
database: a thread that owns one plain :mod:`sqlite3` connection (prepared statements, no ORM) and
applies every write queued while its previous transaction ran in the next one (each in its own
``SAVEPOINT``, so a failing write changes nothing and fails alone), up to :data:`GROUP_COMMIT_MAX`
writes per ``BEGIN IMMEDIATE … COMMIT``. A caller gets its answer only after that commit, so what
the gateway acknowledges is committed exactly as before; there is no added waiting (the window is
the previous transaction's duration). The same design as the user side's fee store
(:mod:`broker.inference.fee_store`).

Durability: the file is in ``journal_mode=WAL`` with ``synchronous=NORMAL`` (set on every
connection, :mod:`broker.provider.db`): a committed transaction is in the WAL file (the OS's page
cache) when ``COMMIT`` returns, so it survives ``kill -9`` of the gateway; a power loss or OS crash
can lose the transactions committed since the last checkpoint (never corrupting the file), and this
thread checkpoints (``PASSIVE``: copies the WAL into the file and fsyncs it) at most
:data:`CHECKPOINT_INTERVAL` seconds after a commit, busy or idle, so that window is about a second
of billing (SQLite's own checkpoint every ~1000 WAL pages still runs under load).
Settlement batches are not written here: their sessions checkpoint right after commit.

Other writers (settlement, async jobs, signature pruning) keep using SQLAlchemy sessions on their
own connections; SQLite serialises them with this thread by its write lock (``busy_timeout``).
"""

from __future__ import annotations

import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, InvalidStateError
from typing import TypeVar

__all__ = ["CHECKPOINT_INTERVAL", "GROUP_COMMIT_MAX", "SQLiteWriter", "WriteOp"]

#: Most writes one group commit applies.
GROUP_COMMIT_MAX = 256
#: Seconds after a commit by which the writer checkpoints the WAL (``PASSIVE``, which fsyncs the
#: database file): the most billing a power loss can take, at any traffic.
CHECKPOINT_INTERVAL = 1.0

_T = TypeVar("_T")
#: One write: runs on the writer's connection inside the group's transaction; its return value is
#: the caller's answer.
WriteOp = Callable[[sqlite3.Connection], _T]

_STOP = object()


def _fail(done: Future, exc: BaseException) -> None:
    """Fail ``done`` unless it is already resolved or was cancelled meanwhile."""
    try:
        done.set_exception(exc)
    except InvalidStateError:
        pass


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout=10000")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn


class SQLiteWriter:
    """The single writer thread of one SQLite database file.

    Args:
        path: the database file (the path of a ``sqlite:///path`` URL).
        name: the thread's name.
        checkpoint_interval: seconds after which committed writes are checkpointed (default
            :data:`CHECKPOINT_INTERVAL`).

    A write is a :data:`WriteOp`; :meth:`submit` queues it and returns a
    :class:`concurrent.futures.Future` resolved after the commit that contains it (with the op's
    exception when the op failed, its savepoint rolled back, or with the commit's exception for
    every op of the group when the commit failed). A future cancelled before its group began is
    skipped; once begun, a write completes whatever its caller does. Async callers await it with
    :func:`asyncio.wrap_future` (no worker-thread hop); blocking callers use :meth:`run`.
    """

    def __init__(
        self,
        path: str,
        *,
        name: str = "gateway-db-writer",
        checkpoint_interval: float = CHECKPOINT_INTERVAL,
    ) -> None:
        self.path = path
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self.checkpoint_interval = checkpoint_interval
        #: groups committed so far (one ``COMMIT`` each)
        self.commits = 0
        #: WAL checkpoints made by this writer
        self.checkpoints = 0
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, op: WriteOp[_T]) -> Future[_T]:
        """Queue ``op``; the future resolves once its group is committed (see the class).

        Raises:
            RuntimeError: the writer was closed.
        """
        done: Future = Future()
        if self._closed:
            raise RuntimeError("the database writer is closed")
        self._queue.put((op, done))
        return done

    def run(self, op: WriteOp[_T]) -> _T:
        """:meth:`submit` and wait: ``op``'s result once committed; its exception otherwise."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("a write op cannot wait for the writer it runs on")
        return self.submit(op).result()

    def close(self, timeout: float = 30.0) -> None:
        """Apply the writes already queued, then stop the thread and close the connection."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout)

    # ------------------------------------------------------------------ the thread

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")  # copies the WAL and fsyncs
            self.checkpoints += 1
        except sqlite3.Error:  # a reader in the way: the next one will do
            pass

    def _take_batch(self, first: object) -> tuple[list, bool]:
        """``first`` and the writes queued behind it (up to :data:`GROUP_COMMIT_MAX`), and
        whether a stop was queued among them."""
        batch = [first]
        while len(batch) < GROUP_COMMIT_MAX:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return batch, True
            batch.append(item)
        return batch, False

    def _commit_group(self, conn: sqlite3.Connection, batch: list) -> None:
        """Apply and commit one group, then answer its callers."""
        try:
            outcomes = self._apply(conn, batch)
            self.commits += 1
        except BaseException as exc:  # the group failed as a whole
            for _op, done in batch:
                _fail(done, exc)
            if not isinstance(exc, Exception):
                raise
            return
        for done, result, error in outcomes:
            if error is not None:
                done.set_exception(error)
            else:
                done.set_result(result)

    def _loop(self) -> None:
        conn: sqlite3.Connection | None = None
        unsynced_since: float | None = None  # first commit not yet checkpointed (monotonic)
        try:
            while True:
                wait = None
                if unsynced_since is not None:
                    wait = max(0.0, unsynced_since + self.checkpoint_interval - time.monotonic())
                try:
                    first = self._queue.get(timeout=wait)
                except queue.Empty:  # idle: make the last commits power-loss safe
                    if conn is not None:
                        self._checkpoint(conn)
                    unsynced_since = None
                    continue
                if first is _STOP:
                    return
                batch, stop = self._take_batch(first)
                try:
                    conn = conn or _connect(self.path)
                except Exception as exc:  # noqa: BLE001 - every caller of the group gets it
                    for _op, done in batch:
                        _fail(done, exc)
                    continue
                self._commit_group(conn, batch)
                now = time.monotonic()
                if unsynced_since is None:
                    unsynced_since = now
                elif now - unsynced_since >= self.checkpoint_interval:
                    self._checkpoint(conn)
                    unsynced_since = None
                if stop:
                    return
        finally:
            if conn is not None:
                if unsynced_since is not None:
                    self._checkpoint(conn)
                conn.close()
            while True:  # nothing queued after a stop (or a crash of this loop) waits forever
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not _STOP:
                    _fail(item[1], RuntimeError("the database writer is closed"))

    @staticmethod
    def _apply(conn: sqlite3.Connection, batch: list) -> list[tuple[Future, object, Exception]]:
        outcomes: list[tuple[Future, object, Exception | None]] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for op, done in batch:
                if not done.set_running_or_notify_cancel():
                    continue  # cancelled before it began: not applied
                conn.execute("SAVEPOINT w")
                try:
                    result = op(conn)
                except Exception as exc:  # noqa: BLE001 - handed to its caller
                    conn.execute("ROLLBACK TO w")
                    conn.execute("RELEASE w")
                    outcomes.append((done, None, exc))
                else:
                    conn.execute("RELEASE w")
                    outcomes.append((done, result, None))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return outcomes
