"""Latency added by ``0g-broker serve`` and the request rate it sustains, against the same provider
gateway called directly, at 1, 10 and 100 concurrent clients — in one run, on this machine, loopback
only.

    .venv/bin/python benchmarks/proxy_overhead.py [--requests 300] [--seconds 20] [--out FILE]

Three processes so the load generator does not share a GIL with the servers:

* ``stack``: anvil + our contracts, a tiny OpenAI-compatible chat backend (no sleeps), the provider
  gateway in front of it (limits raised), service registered and acknowledged;
* ``serve``: ``create_app`` + uvicorn for a funded user (verify mode ``warn``: every response's TEE
  signature is fetched and checked, its fee accounted in SQLite);
* this process: for each concurrency, the same non-streamed chat request against the gateway
  (``/v1/proxy/chat/completions`` with the user's session header) and through ``serve``
  (``/v1/chat/completions``); each level stops after ``--requests`` per client group or
  ``--seconds``, whichever comes first.

Prints a table and writes JSON (default ``benchmarks/results/proxy_overhead.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ZG = 10**18
HERE = Path(__file__).resolve().parent


def _backend_app():
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/chat/completions")
    async def chat(body: dict):
        return {"id": "chatcmpl-b", "object": "chat.completion", "created": 1,
                "model": body.get("model"), "choices": [{"index": 0, "finish_reason": "stop",
                "message": {"role": "assistant", "content": "ok"}}],
                "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}

    return app


def _thread_server(app):
    import socket
    import threading

    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    return f"http://127.0.0.1:{port}"


def role_stack(handshake: Path) -> None:
    """Run devnet + backend + gateway until SIGTERM; write the handshake JSON (with the user key,
    mode 0600)."""
    from broker.broker import create_broker
    from broker.devnet import fund_new_account, start_devnet
    from broker.devnet.stack import start_provider_stack
    from broker.provider.limits import Limits

    stop = False

    def _term(*_):
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _term)
    with tempfile.TemporaryDirectory() as tmp, \
            start_devnet(port=0, state_file=Path(tmp) / "state.json") as net:
        backend = _thread_server(_backend_app())
        with start_provider_stack(net.state, chat_backend_url=backend,
                                  home=Path(tmp) / "provider") as st:
            st.gateway.limits = Limits(per_ip_rps=1e6, per_ip_burst=10**6, per_user_rpm=10**9,
                                       per_user_burst=10**6, max_per_user_concurrent=10**4,
                                       max_global_concurrent=10**4)
            user = fund_new_account(net.state, 100 * ZG)
            key = "0x" + bytes(user.key).hex()
            broker = create_broker(key, network="devnet", rpc_url=net.state.rpc_url,
                                   ledger_address=net.state.ledger_address,
                                   inference_address=net.state.inference_address)
            broker.ledger.add_ledger(50)
            broker.ledger.transfer_fund(st.provider_address, "inference", 20)
            broker.inference.acknowledge_provider_signer(st.provider_address)
            fd = os.open(handshake, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump({"rpc_url": net.state.rpc_url, "ledger": net.state.ledger_address,
                           "inference": net.state.inference_address, "key": key,
                           "provider": st.provider_address, "gateway": st.gateway_url}, f)
            broker.inference.close()
            while not stop:
                time.sleep(0.2)


def role_serve(handshake: Path, port: int) -> None:
    """Run ``serve`` for the handshake's user until SIGTERM."""
    import uvicorn

    from broker.broker import create_broker
    from broker.proxy import ServeSettings, create_app

    hs = json.loads(handshake.read_text())
    broker = create_broker(hs["key"], network="devnet", rpc_url=hs["rpc_url"],
                           ledger_address=hs["ledger"], inference_address=hs["inference"])
    settings = ServeSettings(provider=hs["provider"], port=port, funding_interval=600,
                             extra_routes=True)
    uvicorn.run(create_app(broker, settings), host="127.0.0.1", port=port, log_level="error")


async def _load(url: str, headers: dict, concurrency: int, requests: int, seconds: float) -> dict:
    body = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=60, limits=limits, headers=headers) as client:
        remaining = requests

        async def worker():
            nonlocal remaining, errors
            while remaining > 0 and time.perf_counter() < deadline:
                remaining -= 1
                t0 = time.perf_counter()
                r = await client.post(url, json=body)
                if r.status_code != 200:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - t0)

        await client.post(url, json=body)          # warm the connection and caches
        start = time.perf_counter()
        await asyncio.gather(*[worker() for _ in range(concurrency)])
        elapsed = time.perf_counter() - start
    latencies.sort()
    q = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else latencies * 99
    return {"requests": len(latencies), "errors": errors, "seconds": round(elapsed, 3),
            "rps": round(len(latencies) / elapsed, 1), "p50_ms": round(q[49] * 1000, 2),
            "p99_ms": round(q[98] * 1000, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=["stack", "serve"], help=argparse.SUPPRESS)
    parser.add_argument("--handshake", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--requests", type=int, default=300, help="requests per level and target")
    parser.add_argument("--seconds", type=float, default=20.0, help="time cap per level and target")
    parser.add_argument("--levels", default="1,10,100", help="concurrency levels")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "proxy_overhead.json")
    args = parser.parse_args()
    if args.role == "stack":
        return role_stack(args.handshake)
    if args.role == "serve":
        return role_serve(args.handshake, args.port)

    import socket

    env = dict(os.environ, ZG_HOME=tempfile.mkdtemp(prefix="0g-bench-"))
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory() as tmp:
        hs_path = Path(tmp) / "handshake.json"
        try:
            procs.append(subprocess.Popen([sys.executable, __file__, "--role", "stack",
                                           "--handshake", str(hs_path)], env=env))
            deadline = time.monotonic() + 300
            while not hs_path.exists() or not hs_path.read_text():
                if procs[0].poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("the stack did not start")
                time.sleep(0.2)
            hs = json.loads(hs_path.read_text())
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            procs.append(subprocess.Popen([sys.executable, __file__, "--role", "serve",
                                           "--handshake", str(hs_path), "--port", str(port)],
                                          env=env))
            serve_url = f"http://127.0.0.1:{port}"
            while True:
                try:
                    if httpx.get(serve_url + "/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if procs[1].poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("serve did not start")
                time.sleep(0.2)
            from broker.broker import create_broker

            broker = create_broker(hs["key"], network="devnet", rpc_url=hs["rpc_url"],
                                   ledger_address=hs["ledger"], inference_address=hs["inference"])
            auth = broker.inference.session_headers(hs["provider"]) \
                if hasattr(broker.inference, "session_headers") \
                else broker.inference.get_request_headers(hs["provider"])
            broker.inference.close()
            results = []
            for level in [int(x) for x in args.levels.split(",")]:
                direct = asyncio.run(_load(hs["gateway"] + "/v1/proxy/chat/completions", auth,
                                           level, args.requests, args.seconds))
                proxied = asyncio.run(_load(serve_url + "/v1/chat/completions", {}, level,
                                            args.requests, args.seconds))
                results.append({"concurrency": level, "direct": direct, "serve": proxied,
                                "added_p50_ms": round(proxied["p50_ms"] - direct["p50_ms"], 2),
                                "added_p99_ms": round(proxied["p99_ms"] - direct["p99_ms"], 2)})
        finally:
            for p in reversed(procs):
                p.terminate()
            for p in reversed(procs):
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
    print(f"{'clients':>7} | {'gateway p50/p99 ms':>19} | {'serve p50/p99 ms':>17} | "
          f"{'added p50/p99 ms':>17} | {'gateway rps':>11} | {'serve rps':>9} | errors")
    for r in results:
        d, s = r["direct"], r["serve"]
        print(f"{r['concurrency']:>7} | {d['p50_ms']:>8.1f} / {d['p99_ms']:>8.1f} | "
              f"{s['p50_ms']:>7.1f} / {s['p99_ms']:>7.1f} | {r['added_p50_ms']:>7.1f} / "
              f"{r['added_p99_ms']:>7.1f} | {d['rps']:>11.1f} | {s['rps']:>9.1f} | "
              f"{d['errors']}/{s['errors']}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": {"cpus": os.cpu_count(),
                                                "python": platform.python_version()},
                                    "verify": "warn", "route": "chat/completions (non-stream)",
                                    "results": results}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
