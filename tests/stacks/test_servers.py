"""The one way composition code runs a server (:class:`broker.stacks.servers.LocalServer`), on real
loopback sockets and real child processes: it answers, it stops, a taken port or a dying process
is a clear :class:`ServerStartError`, and a recorded pid that is not ours is never signalled."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from broker.errors import DevnetError, ServerStartError
from broker.ports import free_port
from broker.stacks.servers import LocalServer, process_alive, stop_process

pytestmark = pytest.mark.timeout(120)


def _app() -> Starlette:
    return Starlette(routes=[Route("/health", lambda _r: JSONResponse({"status": "ok"}))])


def test_free_port_can_be_bound_at_once():
    port = free_port()
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))


def test_a_thread_server_answers_then_stops():
    server = LocalServer.in_thread(_app(), name="probe")
    with server:
        assert server.url == f"http://127.0.0.1:{server.port}" and server.pid is None
        assert httpx.get(server.url + "/health", timeout=5).json() == {"status": "ok"}
        server.wait_healthy(5)
        assert server.alive
    assert not server.alive
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/health", timeout=2)


def test_a_taken_port_is_a_clear_start_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ServerStartError, match=f"the probe did not start on .*:{port}"):
            LocalServer.in_thread(_app(), name="probe", port=port)
    assert issubclass(ServerStartError, DevnetError)  # `devnet up` reports it as one line


def test_a_child_that_exits_is_reported_with_its_log(tmp_path):
    log = tmp_path / "logs" / "probe.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    server = LocalServer.in_process(
        ["no-such-command"], name="probe", port=free_port(), env=env, log=log
    )
    with pytest.raises(ServerStartError, match=f"the probe exited during start-up; see {log}"):
        server.wait_healthy(60)
    assert "no-such-command" in log.read_text()  # the child's usage error is in its log
    assert oct(log.stat().st_mode & 0o777) == oct(0o600)
    assert not server.alive


def test_a_recorded_pid_that_is_not_ours_is_left_alone():
    """A pid recorded in a state file may belong to another program by now: never signal it."""
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert not process_alive(other.pid)
        assert stop_process(other.pid) is False
        assert other.poll() is None  # still running
    finally:
        other.kill()
        other.wait()


def test_a_thread_server_does_not_believe_x_forwarded_for():
    """The attack: a local client that sends ``X-Forwarded-For: 203.0.113.9`` to the devnet's
    in-process gateway to get a fresh per-IP bucket. The peer stays the socket's address (the
    gateway applies its own ``trusted_proxies`` rule to the header)."""

    def peer(request):
        return JSONResponse({"client": request.client.host if request.client else None})

    app = Starlette(routes=[Route("/peer", peer)])
    with LocalServer.in_thread(app, name="probe") as server:
        r = httpx.get(server.url + "/peer", headers={"X-Forwarded-For": "203.0.113.9"}, timeout=5)
    assert r.json() == {"client": "127.0.0.1"}
