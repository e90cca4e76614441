"""The fee store's per-request writes in SQLite's own SQL, for the store's writer thread
(:class:`broker.sqlite_writer.SQLiteWriter`) on a SQLite file.

Each function is a write op: it runs on the writer's plain :mod:`sqlite3` connection inside the
group's transaction (``BEGIN IMMEDIATE``: the fee row cannot change under it), touches nothing but
that connection (so a group can be replayed), and takes inputs already checked by
:class:`broker.inference.fee_store.FeeStore` (addresses lower-cased, fees non-negative ints). The
tables are the store's (created by its SQLAlchemy metadata) and the values are stored exactly as
its SQLAlchemy path stores them: amounts in neuron as decimal TEXT (they exceed 64-bit integers),
times as REAL Unix seconds, ``verified`` as 0 / 1 / NULL.
"""

from __future__ import annotations

import sqlite3
import time

__all__ = ["add_fee", "prune_verifications", "record_disputed", "record_verification"]

_SELECT_FEE = (
    'SELECT cached_fee, total_fee, request_count FROM fee_totals WHERE "user" = ? AND provider = ?'
)
_UPDATE_FEE = (
    "UPDATE fee_totals SET cached_fee = ?, total_fee = ?, request_count = ?, updated_at = ? "
    'WHERE "user" = ? AND provider = ?'
)
_INSERT_FEE = (
    'INSERT INTO fee_totals ("user", provider, cached_fee, total_fee, request_count, updated_at) '
    "VALUES (?, ?, ?, ?, ?, ?)"
)
_INSERT_VERIFICATION = (
    'INSERT INTO verification_results ("user", provider, chat_id, verified, reason, signer, '
    "detail, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_DISPUTED = (
    'INSERT INTO disputed_fees ("user", provider, chat_id, fee, reason, created_at) '
    "VALUES (?, ?, ?, ?, ?, ?)"
)
_SELECT_DISPUTED = 'SELECT fee FROM disputed_fees WHERE "user" = ? AND provider = ?'
# all but the newest ``?`` rows (nothing when the table is empty: MIN of nothing is NULL)
_PRUNE = (
    "DELETE FROM verification_results WHERE id < (SELECT MIN(id) FROM "
    "(SELECT id FROM verification_results ORDER BY id DESC LIMIT ?))"
)


def _change_fee_row(
    conn: sqlite3.Connection, user: str, provider: str, cached: int, total: int, count: int
) -> tuple[int, int, int]:
    """Add ``cached`` / ``total`` (neuron) and ``count`` to the fee row of (user, provider),
    creating it from zeros; returns the new ``(cached_fee, total_fee, request_count)``."""
    now = time.time()
    row = conn.execute(_SELECT_FEE, (user, provider)).fetchone()
    if row is None:
        conn.execute(_INSERT_FEE, (user, provider, str(cached), str(total), count, now))
        return cached, total, count
    new = (int(row[0]) + cached, int(row[1]) + total, (row[2] or 0) + count)
    conn.execute(_UPDATE_FEE, (str(new[0]), str(new[1]), new[2], now, user, provider))
    return new


def add_fee(conn: sqlite3.Connection, user: str, provider: str, fee: int) -> tuple[int, int, int]:
    """One response's fee (neuron, ≥ 0) added to the cached and lifetime totals, one request
    counted. Returns the new ``(cached_fee, total_fee, request_count)``."""
    return _change_fee_row(conn, user, provider, fee, fee, 1)


def record_verification(
    conn: sqlite3.Connection,
    user: str,
    provider: str,
    row: tuple[str | None, bool | None, str, str | None, str],
    prune_to: int | None,
) -> None:
    """Insert one verification ``row`` = ``(chat_id, verified, reason, signer, detail)`` (detail
    already cut to its bound); then, when ``prune_to`` is not ``None``, keep only the newest
    ``prune_to`` rows of the log."""
    conn.execute(_INSERT_VERIFICATION, (user, provider, *row, time.time()))
    if prune_to is not None:
        prune_verifications(conn, prune_to)


def prune_verifications(conn: sqlite3.Connection, keep: int) -> None:
    """Delete all but the newest ``keep`` verification rows (one statement)."""
    conn.execute(_PRUNE, (keep,))


def record_disputed(
    conn: sqlite3.Connection, user: str, provider: str, chat_id: str | None, fee: int, reason: str
) -> tuple[int, int]:
    """A refused-but-billed response: one ``disputed_fees`` row and ``fee`` (neuron) added to the
    cached fee only. Returns the disputed totals of (user, provider): ``(count, fee sum)``."""
    _change_fee_row(conn, user, provider, fee, 0, 0)
    conn.execute(_INSERT_DISPUTED, (user, provider, chat_id, str(fee), reason, time.time()))
    fees = [int(f) for (f,) in conn.execute(_SELECT_DISPUTED, (user, provider))]
    return len(fees), sum(fees)
