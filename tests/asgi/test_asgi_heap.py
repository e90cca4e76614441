"""``freeze_startup_heap`` (:mod:`broker.asgi.heap`), in a fresh interpreter (freezing the test
process itself would keep every later test's cyclic garbage): the start-up objects leave the
collector's generations, so a full collection no longer walks them; garbage made afterwards, and
frozen objects dropped by reference counting, are still freed."""

from __future__ import annotations

import json
import subprocess
import sys

_SCRIPT = r"""
import gc, json, weakref
import broker.proxy.app, broker.provider.app  # what a started server holds
from broker.asgi.heap import freeze_startup_heap

class Node:
    pass

kept = Node(); kept.me = kept  # a long-lived cycle, alive at start-up
before = len(gc.get_objects(generation=2))
frozen = freeze_startup_heap()
after = len(gc.get_objects(generation=2))

freed = []
late = Node(); late.me = late  # a cycle made after start-up, then dropped
weakref.finalize(late, freed.append, "late cycle")
del late
gc.collect()

plain = Node()  # a start-up object without a cycle: reference counting still frees it
weakref.finalize(plain, freed.append, "frozen, refcounted")
gc.collect(); gc.freeze()
del plain

print(json.dumps({"before": before, "after": after, "frozen": frozen,
                  "count": gc.get_freeze_count(), "freed": freed}))
"""


def test_startup_objects_leave_the_collector_and_later_garbage_is_freed():
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT], capture_output=True, text=True, timeout=120, check=True
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["frozen"] > 50_000 and got["count"] >= got["frozen"]
    assert got["before"] > 50_000 and got["after"] < got["before"] // 100
    assert got["freed"] == ["late cycle", "frozen, refcounted"]
