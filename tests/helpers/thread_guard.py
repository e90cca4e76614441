"""A guard against auto-funding that outlives its test (imported by name: ``tests/conftest.py``
puts ``tests/helpers`` on sys.path and wires it into a hook and autouse fixtures).

Every auto-funding thread is named after its :class:`~broker.funding.scheduler.FundingScheduler`
(``zg-funding-<n>`` for the scheduler, ``zg-funding-<n>_<i>`` for the workers running cycles). The
guard notes in which scope each scheduler ``zg-funding-<n>`` first appeared: during the set-up of a
fixture (the fixture's scope: ``session``, ``package``, ``module``, ``class``, ``function``) or
elsewhere in a test (``function``). When that scope ends (after the teardown of its fixtures), no
thread of that scheduler may be left: a scheduler that outlives its test keeps polling a
provider and a chain (a devnet, a relay) that are gone, and logs ``check-and-fund failed``
afterwards in other tests. Its cost is a walk over the live threads per fixture set-up and per
test (and a wait of at most ``grace_s`` when a thread is still alive).
"""

from __future__ import annotations

import re
import sys
import threading
import time

import pytest

__all__ = ["FundingGuardPlugin", "FundingThreadGuard"]

#: scopes, narrowest first
_SCOPES = ("function", "class", "module", "package", "session")


def _family_pattern() -> re.Pattern[str] | None:
    """The pattern of auto-funding thread names, or ``None`` while ``broker.funding.scheduler`` is
    not loaded (then no such thread can exist; the guard never imports it itself)."""
    scheduler = sys.modules.get("broker.funding.scheduler")
    if scheduler is None:
        return None
    return re.compile(rf"^({re.escape(scheduler.THREAD_NAME_PREFIX)}-\d+)(?:_\d+)?$")


class FundingThreadGuard:
    """Tracks the auto-funding schedulers alive in the test process and the scope owning each.

    Args:
        grace_s: seconds a scheduler's threads get to end after its scope ended (a cycle stopped
            by ``stop_auto_funding`` finishes in its worker) before they count as leaked.
    """

    def __init__(self, grace_s: float = 0.5) -> None:
        self.grace_s = grace_s
        self.owner: dict[str, str] = {}  # "zg-funding-<n>" -> scope that started it

    @staticmethod
    def alive() -> dict[str, list[threading.Thread]]:
        """Live auto-funding threads by scheduler (``zg-funding-<n>``)."""
        out: dict[str, list[threading.Thread]] = {}
        pattern = _family_pattern()
        if pattern is None:
            return out
        for thread in threading.enumerate():
            match = pattern.match(thread.name)
            if match:
                out.setdefault(match.group(1), []).append(thread)
        return out

    def claim(self, scope: str) -> None:
        """Give ``scope`` every live scheduler that has no owner yet (call it after a fixture's
        set-up with the fixture's scope, after a test's call with ``function``)."""
        for family in self.alive():
            self.owner.setdefault(family, scope)

    def leaks(self, ended: str) -> list[str]:
        """Names of the threads of schedulers owned by ``ended`` or a narrower scope that are
        still alive ``grace_s`` seconds from now (at once when none is alive); unowned schedulers
        count as ``function``. Forgets the schedulers whose threads all ended."""
        narrow = set(_SCOPES[: _SCOPES.index(ended) + 1])
        deadline = time.monotonic() + self.grace_s
        while True:
            alive = self.alive()
            for family in [f for f in self.owner if f not in alive]:
                del self.owner[family]  # ended: forget it
            leaked = {
                family: threads
                for family, threads in alive.items()
                if self.owner.get(family, "function") in narrow
            }
            if not leaked or time.monotonic() >= deadline:
                return sorted(t.name for threads in leaked.values() for t in threads)
            time.sleep(0.05)


class FundingGuardPlugin:
    """The pytest hooks that tell a :class:`FundingThreadGuard` who started each scheduler
    (register it with ``config.pluginmanager.register``; the checks are autouse fixtures)."""

    def __init__(self, guard: FundingThreadGuard) -> None:
        self.guard = guard

    @pytest.hookimpl(wrapper=True)
    def pytest_fixture_setup(self, fixturedef, request):
        """Auto-funding started while a fixture is set up belongs to the fixture's scope."""
        try:
            return (yield)
        finally:
            self.guard.claim(fixturedef.scope)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item):
        """Auto-funding started by the test itself belongs to the test."""
        try:
            return (yield)
        finally:
            self.guard.claim("function")
