"""A loopback TCP relay in front of a JSON-RPC node that can be switched to misbehave (imported by
name: ``tests/conftest.py`` puts ``tests/helpers`` on sys.path): the node "hangs" (requests
swallowed, never answered), or answers nothing to ``eth_sendRawTransaction`` although the node got
the transaction."""

from __future__ import annotations

import socket
import threading
from urllib.parse import urlsplit

__all__ = ["HangingRelay"]


class HangingRelay:
    """A TCP relay to ``target`` (``http://host:port``); :attr:`url` is its own URL.

    * while :attr:`hang` is set, bytes from clients are swallowed (no answer ever comes);
    * while :attr:`mute_sends` is set, a connection that carried ``eth_sendRawTransaction`` gets
      no more answers (the request itself reaches the node).

    :meth:`release` clears both and drops every connection; :meth:`close` also stops listening.
    """

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self.target = (parts.hostname, parts.port)
        self.hang = threading.Event()
        self.mute_sends = threading.Event()
        self._conns: list[socket.socket] = []
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
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._conns += [client, upstream]
            muted = threading.Event()
            threading.Thread(target=self._pump, args=(client, upstream, True, muted),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False, muted),
                             daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_client: bool,
              muted: threading.Event) -> None:
        try:
            while data := src.recv(65536):
                if from_client:
                    if self.hang.is_set():
                        continue                      # swallowed: the node never answers
                    if self.mute_sends.is_set() and b"eth_sendRawTransaction" in data:
                        muted.set()
                elif muted.is_set():
                    continue                          # the node answered; the client never hears
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.close()
            except OSError:
                pass

    def release(self) -> None:
        """Stop misbehaving and drop the open connections (clients reconnect)."""
        self.hang.clear()
        self.mute_sends.clear()
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
                s.close()
            except OSError:
                pass

    def close(self) -> None:
        """:meth:`release`, then stop listening."""
        self.release()
        self._server.close()
