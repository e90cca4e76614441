"""Webhook callbacks cannot be aimed at the worker's own network (server-side request forgery):
loopback, private and link-local targets are refused at submission (400) and again at delivery
(after DNS), unless ``webhook_allow_private`` is set; redirects are not followed; a slow receiver
is cut off by the timeout. Real loopback listeners throughout."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from broker.worker.jobs import WebhookNotifier

pytestmark = pytest.mark.timeout(120)


class Redirector:
    """Answers every POST with ``307`` to ``location``; counts the POSTs."""

    def __init__(self, location: str, delay: float = 0.0) -> None:
        self.attempts = 0
        redirector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                redirector.attempts += 1
                self.rfile.read(int(self.headers.get("content-length", 0)))
                time.sleep(delay)
                self.send_response(307)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _notify(url: str, **kw) -> bool:
    async def run() -> bool:
        async with httpx.AsyncClient() as client:
            notifier = WebhookNotifier(client, backoff_seconds=0.01, **kw)
            return await notifier.notify(url, {"id": "imgjob_x", "status": "completed"})

    return asyncio.run(run())


@pytest.fixture()
def receiver(webhook_receiver):
    """The folder's loopback receiver (its first POST answers 500, then 204)."""
    return webhook_receiver


def test_loopback_receiver_gets_nothing_by_default(receiver):
    port = receiver.url.split(":")[2].split("/")[0]
    for url in (
        receiver.url,
        f"http://localhost:{port}/hook",
        f"http://[::ffff:127.0.0.1]:{port}/",
        f"http://2130706433:{port}/hook",
    ):
        assert _notify(url, attempts=2) is False
    assert receiver.attempts == 0


def test_loopback_receiver_gets_the_callback_when_allowed(receiver):
    assert _notify(receiver.url, allow_private=True) is True
    assert receiver.attempts == 2  # the 500 was retried
    assert receiver.bodies == [{"id": "imgjob_x", "status": "completed"}]


def test_a_name_resolving_to_loopback_is_refused_at_delivery(receiver):
    """The URL passes the by-name check; the addresses its name resolves to do not."""
    host = socket.gethostname()
    addresses = {info[4][0] for info in socket.getaddrinfo(host, 80, type=socket.SOCK_STREAM)}
    if not addresses <= {"127.0.0.1"}:
        pytest.skip(f"{host} does not resolve to 127.0.0.1 only here ({addresses})")
    port = receiver.url.split(":")[2].split("/")[0]
    url = f"http://{host}:{port}/hook"
    assert _notify(url) is False and receiver.attempts == 0
    assert _notify(url, allow_private=True) is True and receiver.attempts == 2
    assert receiver.bodies[0]["id"] == "imgjob_x"


def test_redirects_are_not_followed(receiver):
    redirector = Redirector(receiver.url)
    try:
        assert _notify(redirector.url, allow_private=True, attempts=2) is False
        assert redirector.attempts == 2 and receiver.attempts == 0
    finally:
        redirector.close()


def test_a_slow_receiver_is_cut_off_by_the_timeout(receiver):
    slow = Redirector(receiver.url, delay=3)
    try:
        started = time.monotonic()
        assert _notify(slow.url, allow_private=True, attempts=1, timeout_seconds=0.5) is False
        assert time.monotonic() - started < 2.5
    finally:
        slow.close()


def test_submission_refuses_private_webhooks(serve_app, receiver):
    """The worker app (default settings) answers 400 ``invalid_webhook_url`` before queueing."""
    pytest.importorskip("torch")
    from broker.worker.app import create_app
    from broker.worker.settings import WorkerSettings

    settings = WorkerSettings(model="tiny", device="cpu", idle_unload_seconds=0)
    assert settings.webhook_allow_private is False and settings.webhook_timeout_seconds == 5
    port = receiver.url.split(":")[2].split("/")[0]
    with serve_app(create_app(settings)) as url:
        for hook in (
            receiver.url,
            f"http://localhost:{port}/",
            "http://10.0.0.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]/",
            "http://[fe80::1]/",
        ):
            r = httpx.post(
                url + "/v1/async/images/generations",
                json={"prompt": "x", "size": "32x32", "webhook_url": hook},
                timeout=30,
            )
            assert r.status_code == 400, (hook, r.text)
            error = r.json()["error"]
            assert (error["param"], error["code"]) == ("webhook_url", "invalid_webhook_url")
            assert error["type"] == "invalid_request_error"
        r = httpx.post(
            url + "/v1/async/images/edits",
            timeout=30,
            data={"prompt": "x", "webhook_url": receiver.url},
            files={"image": ("a.png", b"not read", "image/png")},
        )
        assert r.status_code == 400 and r.json()["error"]["param"] == "webhook_url"
        assert len(httpx.get(url + "/v1/internal/status").json()) and receiver.attempts == 0
