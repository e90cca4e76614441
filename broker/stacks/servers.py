"""One way for composition code to run a local server: :class:`LocalServer`, a uvicorn app in a
daemon thread of this process (:meth:`LocalServer.in_thread`) or a ``0g-broker`` server command in
a child process (:meth:`LocalServer.in_process`), both on 127.0.0.1 and waited for until they
answer; free ports come from :func:`broker.ports.free_port`.

Child processes run ``python -m broker.cli.main ...``; :func:`process_alive` and
:func:`stop_process` recognise them by that marker, so a recorded pid that now belongs to another
program is left alone.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Literal, Self

import httpx

from broker.devnet.anvil import pid_alive, terminate_pid
from broker.ports import free_port
from broker.stacks.errors import ServerStartError

__all__ = ["CLI_MODULE", "HOST", "LocalServer", "process_alive", "stop_process"]

#: Servers bind loopback only.
HOST = "127.0.0.1"
#: The module a child server process runs (``python -m broker.cli.main``); also its marker.
CLI_MODULE = "broker.cli.main"


def process_alive(pid: int) -> bool:
    """True when ``pid`` runs and is one of our ``broker.cli.main`` processes (not a zombie).

    Args:
        pid: a process id, e.g. one recorded in the devnet state.

    Returns:
        Whether it runs (where ``/proc`` is missing, a live pid is trusted).
    """
    if not pid_alive(pid):
        return False
    try:
        return CLI_MODULE.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True


def stop_process(pid: int, timeout: float = 10.0) -> bool:
    """Stop one of our server processes: SIGTERM, wait up to ``timeout`` seconds, then SIGKILL.

    Args:
        pid: the process id. timeout: seconds to wait after SIGTERM.

    Returns:
        True when a live process was stopped, False when there was none (a pid now used by an
        unrelated program is left alone).

    Raises:
        DevnetError: it survived SIGKILL.
    """
    if not process_alive(pid):
        return False
    return terminate_pid(pid, timeout, f"process {pid}")


class LocalServer:
    """A server this process started on ``127.0.0.1:<port>``.

    Attributes:
        name: what it is, for messages (``"worker"``, ``"gateway"``, ``"serve"``).
        port: its TCP port. url: ``http://127.0.0.1:<port>``.
        pid: the child process (``None`` for a thread). log: the child's output file.
        app: the ASGI application served in a thread (``None`` for a child process).

    Build one with :meth:`in_thread` or :meth:`in_process`; use it as a context manager or call
    :meth:`stop`. A child process outlives this object unless stopped (``devnet up`` relies on it).
    """

    def __init__(
        self,
        name: str,
        port: int,
        *,
        server: Any = None,
        thread: threading.Thread | None = None,
        pid: int | None = None,
        log: Path | None = None,
    ) -> None:
        self.name = name
        self.port = port
        self.url = f"http://{HOST}:{port}"
        self.pid = pid
        self.log = log
        self.app = server.config.app if server is not None else None
        self._server = server
        self._thread = thread

    def __repr__(self) -> str:
        where = f"pid={self.pid}" if self.pid else "thread"
        return f"LocalServer({self.name!r}, url={self.url!r}, {where})"

    @classmethod
    def in_thread(
        cls,
        app: Any,
        *,
        name: str,
        port: int = 0,
        lifespan: Literal["auto", "on", "off"] = "auto",
        start_timeout: float = 60.0,
    ) -> LocalServer:
        """Run the ASGI ``app`` with uvicorn in a daemon thread and wait until it listens (after
        its lifespan start-up).

        Args:
            app: an ASGI application. name: for messages. port: 0 picks a free one.
            lifespan: uvicorn's lifespan mode. start_timeout: seconds to wait.

        Returns:
            The running :class:`LocalServer`.

        Raises:
            ServerStartError: it stopped during start-up (port taken, start-up hook failed; uvicorn
                logged why) or did not start within ``start_timeout`` seconds.
        """
        import uvicorn

        port = port or free_port(HOST)
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=HOST,
                port=port,
                log_level="warning",
                lifespan=lifespan,
                # as the real servers run: the peer address is the socket's; X-Forwarded-For is
                # for the gateway's own trusted_proxies rule, never rewritten by uvicorn
                proxy_headers=False,
            )
        )

        def run() -> None:
            with contextlib.suppress(SystemExit):  # uvicorn exits when start-up fails (logged)
                server.run()

        thread = threading.Thread(target=run, daemon=True, name=f"{name}-{port}")
        self = cls(name, port, server=server, thread=thread)
        thread.start()
        deadline = time.monotonic() + start_timeout
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise ServerStartError(
                    f"the {name} did not start on {self.url} (see the messages above)"
                )
            time.sleep(0.02)
        return self

    @classmethod
    def in_process(
        cls, args: list[str], *, name: str, port: int, env: dict[str, str], log: Path
    ) -> LocalServer:
        """Start ``python -m broker.cli.main <args>`` (a server command that binds ``port``) in its
        own session, so it outlives this process; its output goes to ``log`` (mode 0600).

        Args:
            args: the command line after ``0g-broker`` (no secrets: pass them in ``env``).
            name: for messages. port: the port the command binds (for :attr:`url`).
            env: the child's whole environment. log: its output file (folders made, mode 0700).

        Returns:
            The :class:`LocalServer` (started, not yet answering: see :meth:`wait_healthy`).
        """
        log.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", CLI_MODULE, *args],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=fd,
                stderr=fd,
                start_new_session=True,
                close_fds=True,
            )
        finally:
            os.close(fd)
        return cls(name, port, pid=proc.pid, log=log)

    @property
    def alive(self) -> bool:
        """Whether the thread or the process still runs."""
        if self.pid is not None:
            return process_alive(self.pid)
        return self._thread is not None and self._thread.is_alive()

    def wait_healthy(self, timeout: float) -> None:
        """Wait until ``GET <url>/health`` answers 200.

        Args:
            timeout: seconds.

        Raises:
            ServerStartError: the server stopped, or did not answer within ``timeout`` (the
                message names the log file of a child process).
        """
        hint = f"; see {self.log}" if self.log else ""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive:
                raise ServerStartError(f"the {self.name} exited during start-up{hint}")
            try:
                if httpx.get(self.url + "/health", timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise ServerStartError(
            f"the {self.name} did not answer {self.url}/health within {timeout:.0f} s{hint}"
        )

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the server (idempotent): ask uvicorn to exit and join the thread, or stop the
        child process (:func:`stop_process`).

        Args:
            timeout: seconds to wait.
        """
        if self.pid is not None:
            stop_process(self.pid, timeout)
            return
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None and self._thread.is_alive():
            self._thread.join(timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
