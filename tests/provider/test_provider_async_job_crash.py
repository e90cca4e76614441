"""An async image job is billed exactly once whatever moment the gateway dies at: between the
backend's "completed" and the fee, a restarted gateway still bills it; a job billed before the
crash is not billed again (nor unbilled by a later 404 from a backend that forgot it).

Real parts: a SQLite file (the gateway's database, its group-commit writer), reopened after each
"crash". The crash is an exception raised by the first write named (a kill between two writes
leaves the same database behind: only committed writes persist).
"""

from __future__ import annotations

import pytest

from broker.provider.async_jobs import AsyncJobTracker
from broker.provider.billing import FeeLedger
from broker.provider.db import Database, RequestStatus

USER = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
PRICE = 10**16
COMPLETED = {"status": "completed"}


class Killed(BaseException):
    """The process dies here."""


class DyingLedger(FeeLedger):
    """A ledger whose process dies at its first ``bill`` or ``fail`` call."""

    def bill(self, *args, **kwargs):
        raise Killed

    def fail(self, *args, **kwargs):
        raise Killed


class DyingTracker(AsyncJobTracker):
    """A tracker whose process dies when it would move a job's status."""

    def _close(self, job_id, status):  # the moment of the crash
        raise Killed


def _open(path):
    db = Database(f"sqlite:///{path}")
    return db, FeeLedger(db)


def _status(db, request_hash):
    with db.engine.connect() as conn:
        return conn.exec_driver_sql(
            "SELECT status, fee FROM requests WHERE request_hash = ?", (request_hash,)
        ).one()


@pytest.mark.parametrize("dies_in", ["ledger", "job table"])
def test_a_completed_job_is_billed_once_across_a_crash(tmp_path, dies_in):
    path = tmp_path / "gateway.db"
    db, ledger = _open(path)
    ledger.open_request("r1", USER, "text-to-image", "tiny")
    AsyncJobTracker(db, ledger, PRICE).register("job-1", "r1", USER, 3)
    dying = (
        AsyncJobTracker(db, DyingLedger(db), PRICE)
        if dies_in == "ledger"
        else DyingTracker(db, ledger, PRICE)
    )
    with pytest.raises(Killed):
        dying.observe("job-1", 200, COMPLETED)
    db.dispose()

    db, ledger = _open(path)  # the restarted gateway watches its pending jobs again
    tracker = AsyncJobTracker(db, ledger, PRICE)
    assert tracker.pending() == ["job-1"]
    assert tracker.observe("job-1", 200, COMPLETED) == "billed"
    assert _status(db, "r1") == (RequestStatus.UNSETTLED, str(3 * PRICE))
    assert tracker.observe("job-1", 200, COMPLETED) is None  # once
    assert tracker.observe("job-1", 404, None) is None  # the backend forgot it: still billed
    assert ledger.unsettled_fee(USER) == 3 * PRICE
    db.dispose()


def test_a_billed_row_is_neither_billed_again_nor_failed(tmp_path):
    """The ledger's writes only move a ``pending`` row: a settled fee cannot become unsettled
    again (a second charge), an unsettled one cannot become failed (a dropped fee)."""
    db, ledger = _open(tmp_path / "gateway.db")
    tracker = AsyncJobTracker(db, ledger, PRICE)
    ledger.open_request("r2", USER, "text-to-image", "tiny")
    tracker.register("job-2", "r2", USER, 2)
    ledger.bill("r2", tracker_fee := _fee(2))
    assert tracker.observe("job-2", 404, None) == "failed"  # the job table's word only
    assert _status(db, "r2") == (RequestStatus.UNSETTLED, str(2 * PRICE))
    with db.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE requests SET status = 'settled' WHERE request_hash = 'r2'")
    ledger.bill("r2", tracker_fee)
    ledger.fail("r2")
    assert _status(db, "r2") == (RequestStatus.SETTLED, str(2 * PRICE))
    assert ledger.unsettled_fee(USER) == 0
    db.dispose()


def _fee(images: int):
    from broker.wire.fees import Fee, image_counts

    return Fee.of(image_counts(images), 0, PRICE)
