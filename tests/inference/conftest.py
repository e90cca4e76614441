"""Fixtures of the inference tests: a real loopback HTTP server that plays a provider's
``/v1/proxy/signature/{chat_id}`` and ``/v1/models`` endpoints."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest


@dataclass
class FakeProvider:
    """Routes: ``responses[path] = (status, body)`` where path excludes the query string;
    ``queued[path]`` answers given once each, in order, before ``responses[path]``."""

    url: str = ""
    responses: dict[str, tuple[int, Any]] = field(default_factory=dict)
    queued: dict[str, list[tuple[int, Any]]] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def set_signature(self, chat_id: str, status: int, body: Any) -> None:
        self.responses[f"/v1/proxy/signature/{chat_id}"] = (status, body)

    def queue_signature(self, chat_id: str, status: int, body: Any, times: int = 1) -> None:
        """Answer the next ``times`` signature requests of ``chat_id`` with ``(status, body)``."""
        self.queued.setdefault(f"/v1/proxy/signature/{chat_id}", []).extend(
            [(status, body)] * times
        )

    def answer(self, path: str) -> tuple[int, Any]:
        """The answer to a GET of ``path``."""
        pending = self.queued.get(path)
        if pending:
            return pending.pop(0)
        return self.responses.get(path, (404, {"error": "not found"}))


@contextmanager
def serve_fake_provider() -> Iterator[FakeProvider]:
    """Run a ThreadingHTTPServer on 127.0.0.1:0 for the ``with`` block."""
    state = FakeProvider()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append((self.path, dict(self.headers.items())))
            path = unquote(urlsplit(self.path).path)
            status, body = state.answer(path)
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
    )
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture()
def fake_provider():
    """A fake provider HTTP server for one test; yields a :class:`FakeProvider`."""
    with serve_fake_provider() as state:
        yield state


@pytest.fixture(scope="module")
def fake_provider_module():
    """A fake provider HTTP server shared by a test module."""
    with serve_fake_provider() as state:
        yield state
