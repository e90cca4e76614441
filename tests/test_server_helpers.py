"""The tests' loopback server helper (``tests/helpers/server_helpers.py``): a server whose start-up
is too slow is stopped before ``UvicornThread`` raises, so that the start-up (serve's lifespan
starts auto-funding) does not go on running after the test."""

from __future__ import annotations

import asyncio

import pytest
from server_helpers import UvicornThread, free_port


def test_a_server_too_slow_to_start_is_stopped_before_the_error():
    events: list[str] = []

    async def app(scope, receive, send) -> None:
        if scope["type"] != "lifespan":
            return
        await receive()  # lifespan.startup
        await asyncio.sleep(0.5)  # slower than the 5 polls below
        events.append("started")
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        events.append("stopped")
        await send({"type": "lifespan.shutdown.complete"})

    server = UvicornThread(app, free_port(), start_polls=5)
    with pytest.raises(RuntimeError, match="did not start"):
        server.__enter__()
    assert not server.thread.is_alive()  # stopped and joined, not left serving
    assert events == ["started", "stopped"]  # its start-up finished and its shutdown ran
