"""The test suite's auto-funding guard (``tests/helpers/thread_guard.py``, wired in
``tests/conftest.py``): it names exactly the auto-funding threads of the scope that ended, waits a
short grace for a stopping one, and ignores other schedulers' threads (the gateway's settlement
scheduler is ``APScheduler``)."""

from __future__ import annotations

import threading
import time

from thread_guard import FundingThreadGuard

import broker.funding.scheduler  # noqa: F401 - the guard looks for its threads once it is loaded


def test_guard_names_the_threads_of_the_ended_scope_only():
    guard = FundingThreadGuard(grace_s=0.2)
    guard.claim("session")  # auto-funding of session fixtures (a serve) may be running
    before = dict(guard.owner)
    stop = threading.Event()
    threads = []

    def spawn(name: str) -> None:
        thread = threading.Thread(target=stop.wait, name=name, daemon=True)
        thread.start()
        threads.append(thread)

    try:
        spawn("zg-funding-900001")  # started by a module fixture
        guard.claim("module")
        spawn("zg-funding-900002")  # started by the test; its worker appears later
        guard.claim("function")
        spawn("zg-funding-900002_0")
        spawn("APScheduler")
        spawn("zg-funding-extra")
        started = time.monotonic()
        assert guard.leaks("function") == ["zg-funding-900002", "zg-funding-900002_0"]
        assert time.monotonic() - started >= 0.2  # it gave them the grace first
        assert guard.leaks("module") == [
            "zg-funding-900001",
            "zg-funding-900002",
            "zg-funding-900002_0",
        ]
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
    started = time.monotonic()
    assert guard.leaks("module") == []
    assert time.monotonic() - started < 0.1  # nothing alive: no wait
    assert guard.owner == before  # ended schedulers are forgotten


def test_guard_gives_a_stopping_thread_its_grace():
    guard = FundingThreadGuard(grace_s=2.0)
    guard.claim("session")
    thread = threading.Thread(target=time.sleep, args=(0.3,), name="zg-funding-900003_0")
    thread.start()
    guard.claim("function")
    assert guard.leaks("function") == []  # it ended within the grace
    thread.join()
