"""``devnet up`` right after ``devnet down``: connections of the stopped devnet left in TIME_WAIT
must not make the port look taken (checked with SO_REUSEADDR, as anvil and uvicorn bind); a port
something listens on still is."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from broker.devnet.anvil import port_in_use
from broker.ports import port_available


def _time_wait_port() -> int:
    """A loopback port whose only trace is a server-side connection in TIME_WAIT, left by a server
    that bound like anvil and uvicorn do (SO_REUSEADDR)."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        client = socket.create_connection(("127.0.0.1", port))
        conn, _ = listener.accept()
        conn.close()  # the server closes first: its side enters TIME_WAIT
        client.recv(1)
        client.close()
    return port


def test_time_wait_is_not_in_use():
    port = _time_wait_port()
    with socket.socket() as plain:  # the old check (no SO_REUSEADDR) calls it taken
        try:
            plain.bind(("127.0.0.1", port))
        except OSError:
            pass
        else:
            pytest.skip("this kernel lets a plain bind reuse a TIME_WAIT port")
    assert not port_in_use(port) and port_available("127.0.0.1", port)


def test_a_listening_port_is_in_use():
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert port_in_use(port) and not port_available("127.0.0.1", port)
    assert port_available("127.0.0.1", 0)


@pytest.mark.timeout(120)
def test_devnet_starts_on_a_port_in_time_wait(tmp_path: Path):
    from broker.devnet import start_devnet

    port = _time_wait_port()
    with start_devnet(port=port, state_file=tmp_path / "state.json") as net:
        assert net.state.port == port and net.state.rpc_url.endswith(f":{port}")


def test_devnet_up_with_provider_checks_before_starting(tmp_path: Path):
    """A missing model folder or worker extra is refused before any anvil starts (CLI exit 2 / 1,
    one line, no state file)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "ZG_HOME": str(tmp_path / "home")}
    cli = [sys.executable, "-m", "broker.cli.main", "devnet", "up", "--with-provider"]
    r = subprocess.run(
        [*cli, "--model", str(tmp_path / "nope")],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 2 and "does not exist" in " ".join(r.stderr.replace("│", " ").split())
    assert "Traceback" not in r.stderr
    stub = (
        "import sys; sys.modules['torch'] = None; from broker.cli.main import app; "
        "app(['devnet', 'up', '--with-provider', '--port', '0'])"
    )
    r = subprocess.run(
        [sys.executable, "-c", stub],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert r.returncode == 1 and "[worker] extra (torch is missing)" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    assert not (tmp_path / "home" / "devnet" / "state.json").exists()
