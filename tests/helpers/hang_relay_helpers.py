"""A loopback TCP relay in front of a JSON-RPC node that can be switched to misbehave (imported by
name: ``tests/conftest.py`` puts ``tests/helpers`` on sys.path): the node "hangs" (requests held,
not answered until released), or answers nothing to ``eth_sendRawTransaction`` although the node
got the transaction."""

from __future__ import annotations

import contextlib
import socket
import threading
from dataclasses import dataclass, field
from urllib.parse import urlsplit

__all__ = ["HangingRelay"]


@dataclass
class _Conn:
    client: socket.socket
    upstream: socket.socket
    held: list[bytes] = field(default_factory=list)
    muted: bool = False

    def close(self) -> None:
        for s in (self.client, self.upstream):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()


class HangingRelay:
    """A TCP relay to ``target`` (``http://host:port``); :attr:`url` is its own URL.

    * while :attr:`hang` is set, bytes from clients are held (no answer comes);
      :meth:`release` passes them on, so requests in flight then complete;
    * while :attr:`mute_sends` is set, a connection that carried ``eth_sendRawTransaction`` gets
      no more answers (the request itself reaches the node); :meth:`release` closes it.
    """

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self.target = (parts.hostname, parts.port)
        self.hang = threading.Event()
        self.mute_sends = threading.Event()
        self._conns: list[_Conn] = []
        self._lock = threading.Lock()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            conn = _Conn(client, socket.create_connection(self.target))
            with self._lock:
                self._conns.append(conn)
            threading.Thread(target=self._from_client, args=(conn,), daemon=True).start()
            threading.Thread(target=self._from_node, args=(conn,), daemon=True).start()

    def _from_client(self, conn: _Conn) -> None:
        try:
            while data := conn.client.recv(65536):
                with self._lock:
                    if self.hang.is_set():
                        conn.held.append(data)
                        continue
                    if self.mute_sends.is_set() and b"eth_sendRawTransaction" in data:
                        conn.muted = True
                conn.upstream.sendall(data)
        except OSError:
            pass
        conn.close()

    def _from_node(self, conn: _Conn) -> None:
        try:
            while data := conn.upstream.recv(65536):
                if not conn.muted:
                    conn.client.sendall(data)
        except OSError:
            pass
        conn.close()

    def release(self) -> None:
        """Stop misbehaving: held requests go on to the node, muted connections are closed."""
        with self._lock:
            self.hang.clear()
            self.mute_sends.clear()
            for conn in list(self._conns):
                if conn.muted:
                    conn.close()
                    self._conns.remove(conn)
                    continue
                held, conn.held = conn.held, []
                for data in held:
                    with contextlib.suppress(OSError):
                        conn.upstream.sendall(data)

    def close(self) -> None:
        """Stop listening and drop every connection."""
        self._server.close()
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()
