"""Local TCP ports, checked and picked the way the servers bind (one rule for serve, the demo, the
devnet and the provider stack).

uvicorn (serve, the gateway, the worker) and anvil (tokio) both set ``SO_REUSEADDR`` before binding,
so a port whose last connections sit in ``TIME_WAIT`` is free for them; a check without that option
would call it "in use" for about a minute after a server stopped.
"""

from __future__ import annotations

import socket

__all__ = ["free_port", "port_available"]


def port_available(host: str, port: int) -> bool:
    """Whether a server could bind TCP ``host:port`` now (bind test with ``SO_REUSEADDR``, then
    released at once; a race with another process remains possible, this only refuses early).

    Args:
        host: bind address (``127.0.0.1``, ``0.0.0.0``, ``::1``, a host name).
        port: TCP port, 0..65535 (0 is always available: the kernel picks one).

    Returns:
        ``True`` when the bind succeeds; ``False`` when something listens there (or the address
        cannot be bound at all, e.g. it is not local).
    """
    if port == 0:
        return True
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror:
        return False
    family, socktype, proto, _name, address = infos[0]
    with socket.socket(family, socktype, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that is free now, chosen by the kernel (bind to port 0, read it back,
    release it). Another process may take it before the caller binds; callers that pick their own
    port retry on :class:`~broker.devnet.errors.PortInUseError` where that matters.

    Args:
        host: the address the server will bind (default loopback).

    Returns:
        The port number (1..65535).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]
