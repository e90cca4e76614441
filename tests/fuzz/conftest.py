"""Fixtures of the hostile-input and fuzz tests: one devnet provider stack (tiny worker + gateway +
fake chat backend) and one ``serve`` for the whole folder, a funded user, a worker running as its
own process (a crash shows as a dead process, not a dead test run), and a tally of outcomes."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from devnet_helpers import funded_user_broker, provider_stack
from fuzz_helpers import API_KEY, Tally, chat_backend
from server_helpers import UvicornThread, free_port


@pytest.fixture(scope="session")
def fuzz_stack(devnet, tmp_path_factory):
    """``(stack, backend_url)``: the provider stack in-process with raised gateway limits."""
    with (
        UvicornThread(chat_backend(), free_port()) as backend,
        provider_stack(
            devnet,
            tmp_path_factory.mktemp("fuzz-stack"),
            model="tiny",
            chat_backend_url=backend.url,
            raise_limits=True,
        ) as st,
    ):
        yield st, backend.url


@pytest.fixture(scope="session")
def fuzz_user(devnet, fuzz_stack):
    """A broker for a fresh account with a 10 0G ledger."""
    broker = funded_user_broker(devnet, ledger=10, amount_neuron=100 * 10**18)
    yield broker
    broker.inference.close()


@pytest.fixture(scope="session")
def fuzz_serve(fuzz_stack, fuzz_user):
    """Base URL of a ``serve`` (API key :data:`API_KEY`) for the stack's provider."""
    from broker.proxy import ServeSettings, create_app

    st, _ = fuzz_stack
    settings = ServeSettings(
        provider=st.provider_address, api_key=API_KEY, funding_interval=600, extra_routes=True
    )  # the stack also fronts a chat backend
    with UvicornThread(create_app(fuzz_user, settings), free_port(), start_polls=3000) as server:
        yield server.url


@pytest.fixture(scope="session")
def worker_process(tmp_path_factory):
    """``(process, base_url)``: ``0g-broker worker serve --model tiny`` in its own process."""
    port = free_port()
    log = Path(tmp_path_factory.mktemp("worker-proc")) / "worker.log"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    cli = Path(sys.executable).with_name("0g-broker")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(cli),
                "worker",
                "serve",
                "--model",
                "tiny",
                "--device",
                "cpu",
                "--port",
                str(port),
                "--idle-unload",
                "0",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"worker did not start: {log.read_text()[-2000:]}")
        time.sleep(0.2)
    yield proc, url
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


@pytest.fixture(scope="session")
def tally():
    t = Tally()
    yield t
    if t.counts:
        summary = ", ".join(f"{k}={v}" for k, v in sorted(t.counts.items()))
        sys.stderr.write(f"\nhostile inputs: {summary}\n")
