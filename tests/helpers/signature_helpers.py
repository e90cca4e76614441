"""Helpers for signature attacks in tests."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

from broker.wire.eth_signature import SECP256K1_N


def malleate(signature: bytes | str) -> str:
    """The other valid encoding of a 65-byte ``r ‖ s ‖ v`` signature: ``(r, n - s)`` with the
    other recovery id (same message, same key), as ``0x`` hex with ``v`` kept in its form
    (27/28 or 0/1)."""
    sig = bytes.fromhex(signature.removeprefix("0x")) if isinstance(signature, str) else signature
    s = int.from_bytes(sig[32:64], "big")
    v = sig[64] ^ 1 if sig[64] in (0, 1) else 55 - sig[64]
    return "0x" + (sig[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([v])).hex()


@contextlib.contextmanager
def drip_server(body: bytes, interval_s: float) -> Iterator[str]:
    """A loopback HTTP server that answers every request ``200`` with the right
    ``Content-Length`` at once, then ``body`` one byte every ``interval_s`` seconds (a slow
    loris on the answer side). Yields its base URL; ends its connections on exit."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def answer(conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.recv(65536)
            head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            conn.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode())
            for i in range(len(body)):
                if stop.wait(interval_s):
                    return
                conn.sendall(body[i : i + 1])

    def accept() -> None:
        threads = []
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                break
            t = threading.Thread(target=answer, args=(conn,), daemon=True)
            t.start()
            threads.append(t)
        for t in threads:
            t.join(5)

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        with contextlib.suppress(OSError):
            server.shutdown(socket.SHUT_RDWR)
        server.close()
        acceptor.join(5)
