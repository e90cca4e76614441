"""Loopback HTTP servers for tests (imported by name: ``tests/conftest.py`` puts ``tests/helpers``
on sys.path): a free port (:func:`broker.ports.free_port`, the package's one rule), and a uvicorn
server running an ASGI app in a daemon thread."""

from __future__ import annotations

import asyncio
import threading
import time

import uvicorn

from broker.ports import free_port

__all__ = ["UvicornThread", "free_port", "ok_app", "posts_near_idle_close"]


class UvicornThread:
    """``with UvicornThread(app, port) as server:`` serves ``app`` on ``127.0.0.1:port``
    (``server.url``) from a daemon thread; ``server.server`` is the ``uvicorn.Server``.

    Args:
        app: the ASGI app.
        port: the loopback port (see :func:`free_port`).
        start_polls: how many 20 ms polls to wait for the start before raising ``RuntimeError``.
        stop_timeout: seconds to wait for the server's thread on exit.
        config: more ``uvicorn.Config`` options (e.g. ``proxy_headers=False``).
    """

    def __init__(
        self, app, port: int, *, start_polls: int = 200, stop_timeout: float = 5, **config
    ) -> None:
        self.server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", **config)
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{port}"
        self._start_polls = start_polls
        self._stop_timeout = stop_timeout

    def __enter__(self):
        self.thread.start()
        for _ in range(self._start_polls):
            if self.server.started:
                return self
            if not self.thread.is_alive():  # start-up failed: the thread has ended
                break
            time.sleep(0.02)
        # too slow: stop it, so that a start-up still running (its lifespan may start serve's
        # auto-funding) does not outlive the test; ``__exit__`` is not called after a raise here
        self.__exit__(None, None, None)
        raise RuntimeError("server did not start")

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(self._stop_timeout)


async def ok_app(scope, receive, send) -> None:
    """An ASGI app that reads the body and answers ``200 ok``."""
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


async def posts_near_idle_close(post, idle_timeout: float, rounds: int = 12) -> int:
    """Bursts of 30 concurrent ``await post()`` separated by pauses of about ``idle_timeout``
    (the server's keep-alive timeout), so that pooled connections are picked again just as the
    server closes them; returns how many posts raised."""
    errors = 0

    async def one() -> None:
        nonlocal errors
        try:
            await post()
        except Exception:  # noqa: BLE001 - counted: any failure is the race
            errors += 1

    for i in range(rounds):
        await asyncio.gather(*(one() for _ in range(30)))
        await asyncio.sleep(idle_timeout - 0.006 + i * 0.001)
    await asyncio.gather(*(one() for _ in range(30)))
    return errors
