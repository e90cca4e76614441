"""One writer thread with group commit for a SQLite file: the per-request writes of the gateway
(:mod:`broker.provider.db`) and of ``serve``'s fee store (:mod:`broker.inference.fee_store`).

A :class:`SQLiteWriter` is a thread that owns one plain :mod:`sqlite3` connection (prepared
statements, no ORM) and applies every write queued while its previous transaction ran in the next
one, up to :data:`GROUP_COMMIT_MAX` writes per ``BEGIN IMMEDIATE … COMMIT``. A caller gets its
answer only after that commit, so what is acknowledged is committed; there is no added waiting (the
window is the previous transaction's duration). A failing write changes nothing and fails alone,
in one of two ways (``savepoints``):

* ``True`` (default): each write runs in its own ``SAVEPOINT``, rolled back when it raises.
* ``False``: the writes run without savepoints (two statements fewer per write); when one raises,
  the group's transaction is rolled back and the group applied again with a savepoint per write.
  Ops must then be *replayable*: their only effect is on the connection (a pure function of it and
  their arguments). Meant for callers that check their input before queuing, so ops do not fail.

Durability: the file is in ``journal_mode=WAL`` with ``synchronous=NORMAL``: a committed
transaction is in the WAL file (the OS's page cache) when ``COMMIT`` returns, so it survives
``kill -9`` of the process; a power loss or OS crash can lose the transactions committed since the
last checkpoint (never corrupting the file), and this thread checkpoints (``PASSIVE``: copies the
WAL into the file and fsyncs it) at most :data:`CHECKPOINT_INTERVAL` seconds after a commit, busy
or idle, so that window is about a second of writes (SQLite's own checkpoint every ~1000 WAL pages
still runs under load).

**Inline when idle.** An async caller (:meth:`SQLiteWriter.arun`) whose write finds the writer idle
(nothing queued, nothing being applied) commits it itself, on its own thread, through a second
connection that never waits for SQLite's lock (another process holding it sends the write to the
queue instead) and leaves checkpoints to this thread: one request at a time then costs no thread
hand-off (two wake-ups fewer: the writer's and the event loop's), while writes that meet under load
still share commits in the queue. The order of writes is kept: a write goes inline only when
nothing queued before it is still unapplied. This thread also checkpoints after every
:data:`CHECKPOINT_INLINE_COMMITS` inline commits, without stopping them (the callers' connection
never checkpoints, so that its commits never wait for an fsync), and briefly stops them when the
WAL has passed :data:`WAL_RESTART_FRAMES`, so that it starts over: the WAL file stays small under
steady load, and inline callers do not wait for a checkpoint.

Writes that need another connection (an ORM session) can run on this thread between groups
(:meth:`SQLiteWriter.submit_alone`), so they neither wait for its lock nor make it wait. Writers in
other threads or processes are serialised with this one by SQLite's write lock (``busy_timeout``).
"""

from __future__ import annotations

import asyncio
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, InvalidStateError
from contextlib import contextmanager
from typing import TypeVar

__all__ = [
    "CHECKPOINT_INLINE_COMMITS",
    "CHECKPOINT_INTERVAL",
    "GROUP_COMMIT_MAX",
    "WAL_RESTART_FRAMES",
    "SQLiteWriter",
    "WriteOp",
]

#: Most writes one group commit applies.
GROUP_COMMIT_MAX = 256
#: Seconds after a commit by which the writer checkpoints the WAL (``PASSIVE``, which fsyncs the
#: database file): the most writes a power loss can take, at any traffic.
CHECKPOINT_INTERVAL = 1.0
#: Inline commits after which the writer checkpoints without waiting for the interval (the
#: callers' connection never checkpoints itself): keeps the WAL small under steady load, as
#: SQLite's own checkpoint every ~1000 WAL pages does for the writer's commits.
CHECKPOINT_INLINE_COMMITS = 128
#: WAL frames (pages) beyond which a checkpoint also waits for a moment without writes, so that
#: the WAL file starts over (see :meth:`SQLiteWriter._sync`): about its largest size.
WAL_RESTART_FRAMES = 2048

_T = TypeVar("_T")
#: One write: runs on the writer's connection inside the group's transaction; its return value is
#: the caller's answer.
WriteOp = Callable[[sqlite3.Connection], _T]

_STOP = object()
_WAKE = object()  # inline commits left the WAL unsynced: recompute the deadline (or checkpoint)
_QUEUED = object()  # the inline attempt did not run: queue the write


class _OpFailed(Exception):
    """A write of a group without savepoints raised (the group is replayed with savepoints)."""


def _fail(done: Future, exc: BaseException) -> None:
    """Fail ``done`` unless it is already resolved or was cancelled meanwhile."""
    try:
        done.set_exception(exc)
    except InvalidStateError:
        pass


def _settle(waiter: asyncio.Future, done: Future) -> None:
    """Copy ``done``'s outcome to ``waiter`` (on its loop) unless ``waiter`` was cancelled."""
    if waiter.cancelled():
        return
    error = done.exception()
    if error is not None:
        waiter.set_exception(error)
    else:
        waiter.set_result(done.result())


@contextmanager
def _committed(conn: sqlite3.Connection) -> Iterator[None]:
    """Run the block inside the transaction just begun on ``conn``: ``COMMIT`` after it,
    ``ROLLBACK`` (then re-raise) when it or the commit raises."""
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _connect(path: str, *, inline: bool = False) -> sqlite3.Connection:
    """The writer's connection; ``inline``: the callers' own (no wait for SQLite's lock, no
    automatic checkpoint: the writer thread checkpoints)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout=0" if inline else "PRAGMA busy_timeout=10000")
    if inline:
        conn.execute("PRAGMA wal_autocheckpoint=0")
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
        savepoints: isolate each write by a savepoint (``True``), or replay a group whose write
            failed with savepoints (``False``; ops must be replayable, see the module).

    A write is a :data:`WriteOp`; :meth:`submit` queues it and returns a
    :class:`concurrent.futures.Future` resolved after the commit that contains it (with the op's
    exception when the op failed and changed nothing, or with the commit's exception for every op
    of the group when the commit failed). A future cancelled before its group began is skipped;
    once begun, a write completes whatever its caller does. Async callers use :meth:`arun` (on an
    idle writer the caller commits it itself; else queued and awaited with no worker thread
    waiting; the write is not cancelled with the awaiting task), blocking callers :meth:`run`.
    """

    def __init__(
        self,
        path: str,
        *,
        name: str = "sqlite-writer",
        checkpoint_interval: float = CHECKPOINT_INTERVAL,
        savepoints: bool = True,
    ) -> None:
        self.path = path
        self.savepoints = savepoints
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._held: tuple | None = None  # an alone write taken while gathering a group
        self._closed = False
        self.checkpoint_interval = checkpoint_interval
        #: groups committed so far (one ``COMMIT`` each)
        self.commits = 0
        #: WAL checkpoints made by this writer
        self.checkpoints = 0
        #: groups applied again with savepoints because a write of theirs failed
        self.replays = 0
        #: writes committed inline by their caller (:meth:`arun` on an idle writer)
        self.inline_commits = 0
        self._lock = threading.Lock()  # held while writes are applied, by this thread or inline
        self._count_lock = threading.Lock()
        self._pending = 0  # writes queued and not yet applied
        self._inline_conn: sqlite3.Connection | None = None
        self._unsynced_since: float | None = None  # first commit not checkpointed (monotonic)
        self._inline_unsynced = 0  # inline commits since the last checkpoint began
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, op: WriteOp[_T]) -> Future[_T]:
        """Queue ``op``; the future resolves once its group is committed (see the class).

        Raises:
            RuntimeError: the writer was closed.
        """
        return self._put(op, False)

    def submit_alone(self, fn: Callable[[], _T]) -> Future[_T]:
        """Queue ``fn`` to run on this thread by itself, outside any transaction of this writer:
        after the group before it is committed and before the next one begins (for a write through
        another connection, e.g. an ORM session, which would otherwise wait for this writer's lock
        or make it wait). The future resolves with ``fn()``'s result or exception.

        Raises:
            RuntimeError: the writer was closed.
        """
        return self._put(fn, True)

    def _put(self, op: Callable, alone: bool) -> Future:
        done: Future = Future()
        if self._closed:
            raise RuntimeError("the database writer is closed")
        with self._count_lock:
            self._pending += 1
        self._queue.put((op, done, alone))
        return done

    def _applied(self, count: int) -> None:
        with self._count_lock:
            self._pending -= count

    def run(self, op: WriteOp[_T]) -> _T:
        """:meth:`submit` and wait: ``op``'s result once committed; its exception otherwise."""
        self._not_on_writer()
        return self.submit(op).result()

    async def arun(self, op: WriteOp[_T]) -> _T:
        """Commit ``op`` inline when the writer is idle (nothing queued or being applied, SQLite's
        lock free); otherwise :meth:`submit` it and await from the event loop (woken once the
        commit is done; no worker thread waits). Cancelling the awaiting task does not cancel
        the write: once queued, it is committed (a fee owed is recorded even if its request's
        task is cancelled).

        Raises:
            RuntimeError: the writer was closed. Otherwise what :meth:`run` raises.
        """
        result = self._run_inline(op)
        if result is not _QUEUED:
            return result  # type: ignore[return-value]
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()

        def committed(done: Future) -> None:  # on the writer thread
            try:
                loop.call_soon_threadsafe(_settle, waiter, done)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                pass

        self.submit(op).add_done_callback(committed)
        return await waiter

    def _run_inline(self, op: WriteOp[_T]) -> _T | object:
        """Commit ``op`` on the calling thread when the writer is idle; :data:`_QUEUED` when it
        is not (busy, closed, or SQLite's lock held by another connection). Raises what ``op``
        or ``COMMIT`` raise (nothing committed)."""
        if self._pending or self._closed or not self._lock.acquire(blocking=False):
            return _QUEUED
        try:
            if self._pending or self._closed:
                return _QUEUED
            if self._inline_conn is None:
                self._inline_conn = _connect(self.path, inline=True)
            conn = self._inline_conn
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError:  # locked by another connection: wait in the queue
                return _QUEUED
            with _committed(conn):
                result = op(conn)
            self.commits += 1
            self.inline_commits += 1
            self._inline_unsynced += 1
            if self._unsynced_since is None:
                self._unsynced_since = time.monotonic()
                self._queue.put(_WAKE)  # the writer checkpoints within the interval
            elif self._inline_unsynced == CHECKPOINT_INLINE_COMMITS:
                self._queue.put(_WAKE)  # ... or now: the WAL grows
            return result
        finally:
            self._lock.release()

    def run_alone(self, fn: Callable[[], _T]) -> _T:
        """:meth:`submit_alone` and wait: ``fn()``'s result; its exception otherwise."""
        self._not_on_writer()
        return self.submit_alone(fn).result()

    def _not_on_writer(self) -> None:
        if threading.current_thread() is self._thread:
            raise RuntimeError("a write op cannot wait for the writer it runs on")

    def close(self, timeout: float = 30.0) -> None:
        """Apply the writes already queued, then stop the thread and close the connection."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join(timeout)
        with self._lock:
            if self._inline_conn is not None:
                self._inline_conn.close()
                self._inline_conn = None

    # ------------------------------------------------------------------ the thread

    def _checkpoint(self, conn: sqlite3.Connection) -> int:
        """One ``PASSIVE`` checkpoint (copies the WAL into the file and fsyncs it); the frames in
        the WAL (0 when unknown)."""
        try:
            row = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.checkpoints += 1
        except sqlite3.Error:  # a reader in the way: the next one will do
            return 0
        return row[1] if row is not None and row[1] > 0 else 0

    def _next(self, wait: float | None) -> object:
        """The held alone write, else the next queued item (``queue.Empty`` after ``wait`` s)."""
        if self._held is not None:
            item, self._held = self._held, None
            return item
        return self._queue.get(timeout=wait)

    def _take_batch(self, first: tuple) -> tuple[list, bool]:
        """``first`` and the group writes queued behind it (up to :data:`GROUP_COMMIT_MAX`; an
        alone write ends the group and is held for the next turn), and whether a stop was queued
        among them."""
        batch = [first]
        while len(batch) < GROUP_COMMIT_MAX:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                return batch, True
            if item is _WAKE:  # an inline commit's note, put while this group was queued: the
                continue  # clock it started is read when the loop turns
            if item[2]:
                self._held = item
                break
            batch.append(item)
        return batch, False

    @staticmethod
    def _run_alone(item: tuple) -> None:
        fn, done, _alone = item
        if not done.set_running_or_notify_cancel():
            return
        try:
            result = fn()
        except BaseException as exc:
            done.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            done.set_result(result)

    def _commit_group(self, conn: sqlite3.Connection, batch: list) -> None:
        """Apply and commit one group, then answer its callers."""
        try:
            outcomes = self._apply(conn, batch)
            self.commits += 1
        except BaseException as exc:  # the group failed as a whole
            for _op, done, _alone in batch:
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
        try:
            while True:
                wait = None
                if self._unsynced_since is not None:
                    deadline = self._unsynced_since + self.checkpoint_interval
                    wait = max(0.0, deadline - time.monotonic())
                try:
                    first = self._next(wait)
                except queue.Empty:  # idle: make the last commits power-loss safe
                    conn = self._idle_sync(conn)
                    continue
                if first is _STOP:
                    return
                if first is _WAKE:
                    if self._inline_unsynced >= CHECKPOINT_INLINE_COMMITS:
                        conn = self._idle_sync(conn)
                    continue
                conn, stop = self._handle(conn, first)
                self._mark_commit(conn)
                if stop:
                    return
        finally:
            self._shut(conn, self._unsynced_since is not None)

    def _handle(self, conn: sqlite3.Connection | None, first: tuple) -> tuple:
        """Apply ``first`` (an alone write, or a group begun by it) holding the apply lock;
        ``(connection, whether a stop was queued in the group)``."""
        with self._lock:
            if first[2]:
                self._run_alone(first)
                self._applied(1)
                return conn, False
            batch, stop = self._take_batch(first)
            try:
                conn = conn or _connect(self.path)
            except Exception as exc:  # noqa: BLE001 - every caller of the group gets it
                for _op, done, _alone in batch:
                    _fail(done, exc)
                self._applied(len(batch))
                return conn, stop
            self._commit_group(conn, batch)
            self._applied(len(batch))
            return conn, stop

    def _mark_commit(self, conn: sqlite3.Connection | None) -> None:
        """After a write: start the checkpoint clock, or checkpoint when it has run out (or when
        :data:`CHECKPOINT_INLINE_COMMITS` inline commits were made meanwhile)."""
        now = time.monotonic()
        if self._unsynced_since is None:
            self._unsynced_since = now
        elif conn is not None and (
            now - self._unsynced_since >= self.checkpoint_interval
            or self._inline_unsynced >= CHECKPOINT_INLINE_COMMITS
        ):
            self._sync(conn)

    def _idle_sync(self, conn: sqlite3.Connection | None) -> sqlite3.Connection | None:
        """Checkpoint once the interval is over (opening this thread's connection when only inline
        commits were made); the connection, or None when it cannot be opened (the next turn
        tries again)."""
        try:
            conn = conn or _connect(self.path)
        except sqlite3.Error:
            return None
        self._sync(conn)
        return conn

    def _sync(self, conn: sqlite3.Connection) -> None:
        """Checkpoint. The clock is reset first, holding the apply lock; the checkpoint itself
        (copying the WAL, fsync) runs without it, so inline commits go on meanwhile (one that it
        misses has started the clock again). A checkpoint that races steady writes never catches
        up with them, and the WAL restarts only from a whole checkpoint: when the WAL has grown
        past :data:`WAL_RESTART_FRAMES`, the frames written meanwhile (few: the first checkpoint
        copied the rest) are checkpointed holding the lock, so the next write starts it over."""
        with self._lock:
            unsynced = self._unsynced_since is not None
            self._unsynced_since = None
            self._inline_unsynced = 0
        if unsynced and self._checkpoint(conn) > WAL_RESTART_FRAMES:
            with self._lock:
                self._checkpoint(conn)

    def _shut(self, conn: sqlite3.Connection | None, unsynced: bool) -> None:
        """Checkpoint and close the connection; fail what is still queued (nothing queued after a
        stop, or a crash of the loop, waits forever)."""
        if conn is not None:
            if unsynced:
                self._checkpoint(conn)
            conn.close()
        leftover = [self._held] if self._held is not None else []
        self._held = None
        while True:
            try:
                leftover.append(self._queue.get_nowait())
            except queue.Empty:
                break
        for item in leftover:
            if item is not _STOP and item is not _WAKE:
                _fail(item[1], RuntimeError("the database writer is closed"))

    def _apply(
        self, conn: sqlite3.Connection, batch: list
    ) -> list[tuple[Future, object, Exception | None]]:
        """Apply one group in one transaction (see ``savepoints``); ``(future, result, error)``
        per write begun. Raises what ``BEGIN`` / ``COMMIT`` raise (nothing committed)."""
        live = [(op, done) for op, done, _alone in batch if done.set_running_or_notify_cancel()]
        if not self.savepoints:
            try:
                return self._apply_plain(conn, live)
            except _OpFailed as failed:
                if len(live) == 1:  # rolled back: that was its own isolation
                    return [(live[0][1], None, failed.__cause__)]  # type: ignore[list-item]
                self.replays += 1
        return self._apply_isolated(conn, live)

    @staticmethod
    def _apply_plain(conn: sqlite3.Connection, live: list) -> list:
        """Every write in one transaction without savepoints; :class:`_OpFailed` (from the write's
        exception) once rolled back when one raises."""
        outcomes = []
        conn.execute("BEGIN IMMEDIATE")
        with _committed(conn):
            for op, done in live:
                try:
                    outcomes.append((done, op(conn), None))
                except Exception as exc:
                    raise _OpFailed from exc
        return outcomes

    @staticmethod
    def _apply_isolated(conn: sqlite3.Connection, live: list) -> list:
        """Every write in one transaction, each in its own savepoint."""
        outcomes: list[tuple[Future, object, Exception | None]] = []
        conn.execute("BEGIN IMMEDIATE")
        with _committed(conn):
            for op, done in live:
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
        return outcomes
