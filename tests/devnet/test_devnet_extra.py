"""``0g-broker devnet up --port <taken>`` as a real subprocess: exit status 1, one clear line on
stderr naming the port, no traceback, no anvil left running and no state written."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(120)


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "broker.cli.main", "devnet", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def _anvil_pids_on(port: int) -> list[int]:
    """Pids of running processes whose command line is an anvil with ``--port <port>``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        names = [a.decode(errors="replace") for a in argv if a]
        if any(Path(a).name == "anvil" for a in names[:2]) and "--port" in names:
            i = names.index("--port")
            if i + 1 < len(names) and names[i + 1] == str(port):
                found.append(int(entry.name))
    return found


def test_devnet_up_on_a_taken_port_fails_cleanly(tmp_path):
    home = tmp_path / "home"
    env = {**os.environ, "ZG_HOME": str(home), "COLUMNS": "400"}
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        result = _cli(["up", "--port", str(port)], env)
        anvils = _anvil_pids_on(port)
    assert result.returncode == 1, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error:")
    assert str(port) in lines[0] and "already in use" in lines[0]
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert result.stdout == ""  # no rpc_url/addresses printed
    assert anvils == []  # no anvil was spawned
    assert not (home / "devnet" / "state.json").exists()
    # the CLI agrees that nothing runs
    status = _cli(["status"], env)
    assert status.returncode == 1  # stopped: exit 1
    assert "not running" in status.stderr
