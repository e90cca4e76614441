"""No import leaves the interpreter's recursion limit raised (py_ecc sets 100 000 at import, which
turns a deeply nested JSON body into a C stack overflow: a segmentation fault of the server)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = """
import json, sys
before = sys.getrecursionlimit()
import broker
import broker.proxy.app, broker.provider.app, broker.worker.app
import broker.cli.main
import web3, eth_account, py_ecc.bn128, py_ecc.optimized_bn128
from eth_account import Account
Account.create()
after = sys.getrecursionlimit()
try:
    json.loads("[" * 100000 + "]" * 100000)     # segfaults with the raised limit
except RecursionError:
    pass
print(before, after)
"""


def test_imports_keep_the_recursion_limit() -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, f"rc={done.returncode} {done.stderr[-2000:]}"
    before, after = done.stdout.split()
    assert before == after


def test_this_process_keeps_a_low_limit() -> None:
    """The test process itself (servers run in threads here) has a limit that recursive C
    parsers cannot overflow."""
    assert sys.getrecursionlimit() <= 10_000


@pytest.mark.parametrize("module", ["py_ecc"])
def test_a_fresh_import_restores_the_limit(module: str) -> None:
    import importlib

    import broker  # noqa: F401  (installs the hook)

    limit = sys.getrecursionlimit()
    saved = {name: mod for name, mod in sys.modules.items() if name.split(".")[0] == module}
    for name in saved:
        del sys.modules[name]
    try:
        importlib.import_module(module)
        assert sys.getrecursionlimit() == limit
    finally:
        sys.modules.update(saved)
