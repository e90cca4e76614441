"""What ``0g-broker serve`` adds over calling the provider gateway directly, side by side with the
official TS proxy (``0g-compute-cli inference serve``), in one run, on this machine, loopback only.

    .venv/bin/python benchmarks/proxy_overhead.py             # ~4 min: 1, 10, 50 clients, 3 rounds
    .venv/bin/python benchmarks/proxy_overhead.py --quick     # ~1 min: smoke run (CI)

Processes (each its own, so that the load generator and the servers do not share a GIL and the
gateway's CPU can be read from ``/proc/<pid>/stat``):

* ``stack``: anvil + our contracts behind a **counting JSON-RPC relay** (every chain call of the
  gateway, our ``serve`` and the TS proxy goes through it), a tiny OpenAI-compatible chat backend
  (no sleeps; ``stream: true`` answers SSE), the service registered and acknowledged, three funded
  users (one per proxy);
* ``gateway``: ``0g-broker provider serve`` (limits raised so that they never answer 429);
* ``serve-warn`` / ``serve-off``: ``0g-broker serve --verify warn`` / ``--verify off``;
* ``ts``: ``0g-compute-cli inference serve`` from npm ``@0gfoundation/0g-compute-ts-sdk`` 0.9.0
  (``tests/sdk/js``; installed with ``npm ci`` when missing) whenever node and npm are available;
* this process: for each concurrency level, ``--rounds`` rounds; each round runs a slice of the
  same non-streamed chat request against every target in turn (direct gateway, serve warn, serve
  off, TS), so the targets see the same machine load. Then a streaming run at one client measures
  the time to the first byte of the body, interleaved the same way (batches of ten requests per
  target in turn).

Reported per level and target: p50/p99 latency, added p50/p99 over the direct gateway, requests
per second, ratios ours/TS, gateway CPU ms per billed request (``utime+stime`` of the gateway
process over the requests it billed during that target's slices), the proxy's own CPU ms per
request (the same reading of the ``serve`` or TS process), chain RPCs per request in
steady state (relay counts during the load phase over the requests served), and RSS idle and after
load of every server. Writes JSON (default ``benchmarks/results/proxy_overhead.json``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ZG = 10**18
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SDK_DIR = ROOT / "tests" / "sdk" / "js"
TS_CLI = (
    SDK_DIR
    / "node_modules"
    / "@0gfoundation"
    / "0g-compute-ts-sdk"
    / "cli.commonjs"
    / "cli"
    / "index.js"
)
CLK_TCK = os.sysconf("SC_CLK_TCK")
BODY = {"model": "tiny", "messages": [{"role": "user", "content": "hi"}]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- stack process ---------------------------------------------------------------------------


def _backend_answers(model: str = "tiny") -> tuple[bytes, list[bytes]]:
    """The fake backend's answers, encoded once: a chat completion, and a stream's SSE events."""
    answer = {
        "id": "chatcmpl-b",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [
            {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
    }
    events = []
    for piece in ["o", "k"]:
        chunk = {
            "id": "chatcmpl-b",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": model,
            "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}],
        }
        events.append(f"data: {json.dumps(chunk)}\n\n".encode())
    last = {
        "id": "chatcmpl-b",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": model,
        "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }
    events += [f"data: {json.dumps(last)}\n\n".encode(), b"data: [DONE]\n\n"]
    return json.dumps(answer).encode(), events


def _backend_app():
    """A pure-ASGI OpenAI-style chat backend (``POST /chat/completions``) that answers at once
    from pre-encoded bytes (one event per SSE chunk when ``stream`` is true), so that the fake
    model costs as little CPU as possible: its share is the same for every target."""
    answer, events = _backend_answers()
    json_headers = [(b"content-type", b"application/json")]
    sse_headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":  # (served with lifespan="off")
            return
        if scope["method"] != "POST" or scope["path"] != "/chat/completions":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        raw, more = b"", True
        while more:
            message = await receive()
            raw += message.get("body", b"")
            more = message.get("more_body", False)
        stream = json.loads(raw).get("stream") is True
        if not stream:
            await send({"type": "http.response.start", "status": 200, "headers": json_headers})
            await send({"type": "http.response.body", "body": answer})
            return
        await send({"type": "http.response.start", "status": 200, "headers": sse_headers})
        for event in events:
            await send({"type": "http.response.body", "body": event, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    return app


class _Relay:
    """A JSON-RPC relay in front of anvil that counts calls by method (``GET /counts``)."""

    def __init__(self, upstream: str) -> None:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse, Response
        from starlette.routing import Route

        self.counts: dict[str, int] = {}
        self._lock = threading.Lock()
        sessions: list = []  # one aiohttp session, made on the server's own loop

        async def rpc(request: Request) -> Response:
            import aiohttp

            if not sessions:
                sessions.append(
                    aiohttp.ClientSession(
                        timeout=aiohttp.ClientTimeout(total=60),
                        connector=aiohttp.TCPConnector(keepalive_timeout=3),
                    )
                )
            raw = await request.body()
            try:
                msg = json.loads(raw)
                calls = msg if isinstance(msg, list) else [msg]
                with self._lock:
                    for c in calls:
                        m = c.get("method", "?")
                        self.counts[m] = self.counts.get(m, 0) + 1
            except ValueError:
                pass
            async with sessions[0].post(
                upstream, data=raw, headers={"content-type": "application/json"}
            ) as r:
                content = await r.read()
            return Response(content, status_code=r.status, media_type="application/json")

        async def counts(_request: Request) -> Response:
            with self._lock:
                return JSONResponse(dict(self.counts))

        self.app = Starlette(
            routes=[Route("/", rpc, methods=["POST"]), Route("/counts", counts, methods=["GET"])]
        )


def _thread_server(app) -> str:
    import uvicorn

    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="off")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    return f"http://127.0.0.1:{port}"


def role_stack(handshake: Path, home: Path) -> None:
    """devnet + relay + backend + registered service + three funded users; write the handshake
    (keys included, mode 0600) and run until SIGTERM."""
    from eth_account import Account

    from broker.broker import create_broker
    from broker.chain.connection import connect
    from broker.chain.contracts import InferenceServingContract
    from broker.chain.sender import TransactionSender
    from broker.devnet import fund_new_account, start_devnet
    from broker.provider.register import register_and_acknowledge
    from broker.provider.tee import load_tee_signer
    from broker.stacks.provider_stack import PROVIDER_ACCOUNT_INDEX, gateway_env, provider_settings

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with start_devnet(port=0, state_file=home / "state.json") as net:
        relay = _Relay(net.state.rpc_url)
        relay_url = _thread_server(relay.app)
        backend = _thread_server(_backend_app())
        state = net.state.model_copy(update={"rpc_url": relay_url})
        provider_key = state.accounts[PROVIDER_ACCOUNT_INDEX].private_key.get_secret_value()
        gw_port = _free_port()
        settings = provider_settings(
            state,
            provider_key=provider_key,
            home=home / "provider",
            model="tiny",
            gateway_port=gw_port,
            worker_url="http://127.0.0.1:9",
            price_per_image=10**12,
            chat_backend_url=backend,
            db_name="gateway.db",
        )
        # a chatbot service billed per token (B9), its backend the fake chat server
        settings = settings.model_copy(
            update={"service_type": "chatbot", "input_price": 10**12, "target_url": backend}
        )
        (home / "provider").mkdir(parents=True, exist_ok=True, mode=0o700)
        signer = load_tee_signer(settings)
        w3 = connect(relay_url)
        wallet = Account.from_key(provider_key)
        contract = InferenceServingContract(
            w3, state.inference_address, TransactionSender(w3, wallet)
        )
        owner = Account.from_key(state.accounts[0].private_key.get_secret_value())
        register_and_acknowledge(contract, settings, signer.address, owner=owner)
        users = {}
        for name in ("warn", "off", "ts"):
            user = fund_new_account(state, 100 * ZG)
            key = "0x" + bytes(user.key).hex()
            broker = create_broker(
                key,
                network="devnet",
                rpc_url=relay_url,
                ledger_address=state.ledger_address,
                inference_address=state.inference_address,
            )
            broker.ledger.add_ledger(50)
            broker.ledger.transfer_fund(wallet.address, "inference", 20)
            if name != "ts":
                broker.inference.acknowledge_provider_signer(wallet.address)
            broker.inference.close()
            users[name] = key
        genv = gateway_env({}, settings)
        fd = os.open(handshake, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(
                {
                    "rpc_url": relay_url,
                    "ledger": state.ledger_address,
                    "inference": state.inference_address,
                    "users": users,
                    "provider": wallet.address,
                    "gateway_port": gw_port,
                    "gateway_env": genv,
                },
                f,
            )
        stop.wait()


def role_relay(port: int, upstream: str) -> None:
    """The floor of any local proxy: uvicorn (as ``serve`` runs it) forwarding each request's
    method, path suffix, headers and body to ``upstream`` with one aiohttp session and relaying the
    answer, with no checks, signing, billing or verification. Its added latency over ``direct`` is
    what one more loopback HTTP hop costs on this machine."""
    import aiohttp
    import uvicorn

    sessions: list = []
    skip = {b"host", b"content-length", b"connection", b"transfer-encoding"}

    async def app(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":  # (served with lifespan="off")
            return
        if not sessions:
            sessions.append(
                aiohttp.ClientSession(
                    auto_decompress=False, connector=aiohttp.TCPConnector(keepalive_timeout=3)
                )
            )
        raw, more = b"", True
        while more:
            message = await receive()
            raw += message.get("body", b"")
            more = message.get("more_body", False)
        headers = {k.decode(): v.decode() for k, v in scope["headers"] if k not in skip}
        path = scope["path"].replace("/v1/chat/completions", "/v1/proxy/chat/completions")
        async with sessions[0].request(
            scope["method"], upstream + path, data=raw, headers=headers
        ) as r:
            out = [
                (k.lower().encode(), v.encode())
                for k, v in r.headers.items()
                if k.lower().encode() not in skip
            ]
            await send({"type": "http.response.start", "status": r.status, "headers": out})
            async for chunk in r.content.iter_any():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    uvicorn.run(
        app, host="127.0.0.1", port=port, log_level="error", access_log=False, lifespan="off"
    )


# -- driver ----------------------------------------------------------------------------------


def _proc_cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def _rss_mib(pid: int) -> float:
    """RSS MiB of ``pid`` and its children."""
    total = 0
    pids = [pid]
    try:
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            pids.append(int(child))
    except OSError:
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return round(total / 1024, 1)


def _quantiles(lat: list[float]) -> tuple[float, float]:
    lat = sorted(lat)
    if not lat:
        return float("nan"), float("nan")
    if len(lat) == 1:
        return lat[0] * 1000, lat[0] * 1000
    q = statistics.quantiles(lat, n=100, method="inclusive")
    return q[49] * 1000, q[98] * 1000


FIRST_ERRORS: dict[str, str] = {}


BODY_BYTES = json.dumps(BODY).encode()
STREAM_BYTES = json.dumps({**BODY, "stream": True}).encode()
#: streamed requests per target in one turn of the interleaved time-to-first-byte run
STREAM_BATCH = 10


class _LoadClient:
    """The load generator's HTTP client for one target: ``aiohttp`` (default, the leaner one, so
    that the client's CPU, which every target pays alike, compresses the ratios less) or ``httpx``
    (the client of the earlier figures). Keep-alive connections, up to 100 at once.

    Args:
        kind: ``"aiohttp"`` or ``"httpx"``. headers: sent with every request.
    """

    def __init__(self, kind: str, headers: dict[str, str]) -> None:
        self.kind = kind
        self.headers = {**headers, "content-type": "application/json"}
        if kind == "httpx":
            self._httpx = httpx.AsyncClient(
                timeout=120,
                headers=self.headers,
                limits=httpx.Limits(max_connections=100, max_keepalive_connections=100),
            )
        else:
            import aiohttp

            self._aiohttp = aiohttp.ClientSession(
                headers=self.headers,
                timeout=aiohttp.ClientTimeout(total=120),
                # idle connections dropped before the servers' own 5 s idle close (no reuse race)
                connector=aiohttp.TCPConnector(limit=100, keepalive_timeout=3),
                skip_auto_headers=("User-Agent",),
            )

    async def post(self, url: str) -> tuple[int, str]:
        """POST the chat request; ``(status, body text)``. Raises OSError/aiohttp/httpx errors."""
        if self.kind == "httpx":
            r = await self._httpx.post(url, content=BODY_BYTES)
            return r.status_code, r.text
        async with self._aiohttp.post(url, data=BODY_BYTES) as r:
            return r.status, await r.text()

    async def ttfb(self, url: str) -> float | None:
        """Seconds from sending a streamed chat request to its first body bytes (None: failed)."""
        t0 = time.perf_counter()
        first = None
        if self.kind == "httpx":
            async with self._httpx.stream("POST", url, content=STREAM_BYTES) as r:
                async for _chunk in r.aiter_raw():
                    if first is None:
                        first = time.perf_counter() - t0
                return first if r.status_code == 200 else None
        async with self._aiohttp.post(url, data=STREAM_BYTES) as r:
            async for _chunk in r.content.iter_any():
                if first is None:
                    first = time.perf_counter() - t0
            return first if r.status == 200 else None

    async def aclose(self) -> None:
        if self.kind == "httpx":
            await self._httpx.aclose()
        else:
            await self._aiohttp.close()


async def _slice(
    client: _LoadClient, url: str, concurrency: int, requests: int, seconds: float
) -> tuple[list[float], int, float]:
    latencies: list[float] = []
    errors = 0
    remaining = requests
    deadline = time.perf_counter() + seconds

    async def worker():
        nonlocal remaining, errors
        while remaining > 0 and time.perf_counter() < deadline:
            remaining -= 1
            t0 = time.perf_counter()
            try:
                status, text = await client.post(url)
            except Exception as e:  # noqa: BLE001 - counted and reported, the run goes on
                errors += 1
                FIRST_ERRORS.setdefault(url, repr(e))
                continue
            if status != 200:
                errors += 1
                FIRST_ERRORS.setdefault(url, f"{status} {text[:300]}")
                continue
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    await asyncio.gather(*[worker() for _ in range(concurrency)])
    return latencies, errors, time.perf_counter() - start


async def _ttfb(client: _LoadClient, url: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        first = await client.ttfb(url)
        if first is not None:
            out.append(first)
    return out


def _wait_http(
    url: str, proc: subprocess.Popen, what: str, timeout: float = 300, method: str = "GET"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"{what} exited with {proc.returncode}")
        try:
            r = httpx.request(
                method, url, timeout=2, **({"json": BODY} if method == "POST" else {})
            )
            if r.status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{what} did not start")


def _ts_available() -> str | None:
    """Why the TS proxy cannot run, or None."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        return "node/npm not installed"
    if not TS_CLI.is_file():
        try:
            done = subprocess.run(
                ["npm", "ci", "--no-audit", "--no-fund"],
                cwd=SDK_DIR,
                capture_output=True,
                text=True,
                timeout=420,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return "npm ci timed out"
        if done.returncode != 0 or not TS_CLI.is_file():
            return "npm ci failed: " + (done.stderr or done.stdout).strip()[-200:]
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--role", choices=["stack", "relay"], help=argparse.SUPPRESS)
    parser.add_argument("--relay-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--upstream", help=argparse.SUPPRESS)
    parser.add_argument("--handshake", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--levels", default="1,10,50", help="concurrency levels")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per level")
    parser.add_argument(
        "--requests", type=int, default=200, help="requests per slice (one target, one round)"
    )
    parser.add_argument("--seconds", type=float, default=6.0, help="time cap per slice")
    parser.add_argument(
        "--stream-requests",
        type=int,
        default=30,
        help="streamed requests per target for the time to first byte (in batches of ten)",
    )
    parser.add_argument("--no-ts", action="store_true", help="skip the TS proxy")
    parser.add_argument(
        "--floor",
        action="store_true",
        help="also run `relay`: a bare uvicorn + aiohttp pass-through (the cost of one more hop)",
    )
    parser.add_argument(
        "--client",
        choices=["aiohttp", "httpx"],
        default="aiohttp",
        help="the load generator's HTTP client (the same for every target)",
    )
    parser.add_argument(
        "--profile",
        choices=["gateway", "serve-warn", "serve-off", "relay"],
        help="record this process with py-spy during the load",
    )
    parser.add_argument(
        "--profile-out",
        type=Path,
        default=Path("profile.txt"),
        help="py-spy output (.txt: collapsed stacks, else a flame graph SVG)",
    )
    parser.add_argument(
        "--profile-gil",
        action="store_true",
        help="sample only the thread holding the GIL (Python work; no waits or system calls)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: levels 1,10, one round, 40 requests, 3 s slices",
    )
    parser.add_argument("--out", type=Path, default=HERE / "results" / "proxy_overhead.json")
    args = parser.parse_args()
    if args.role == "stack":
        return role_stack(args.handshake, args.home)
    if args.role == "relay":
        return role_relay(args.relay_port, args.upstream)
    if args.quick:  # smaller defaults; options given on the command line win
        given = {a.split("=", 1)[0] for a in sys.argv[1:] if a.startswith("--")}
        for name, value in (
            ("levels", "1,10"),
            ("rounds", 1),
            ("requests", 40),
            ("seconds", 3.0),
            ("stream_requests", 10),
        ):
            if "--" + name.replace("_", "-") not in given:
                setattr(args, name, value)

    ts_skip = "--no-ts" if args.no_ts else _ts_available()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ZG_PROVIDER_", "ZG_SERVE_"))}
    env["PYTHONUNBUFFERED"] = "1"
    procs: dict[str, subprocess.Popen] = {}
    tmp = Path(tempfile.mkdtemp(prefix="0g-bench-"))
    logs = tmp / "logs"
    logs.mkdir()

    def spawn(name: str, cmd: list[str], extra: dict[str, str], cwd: Path | None = None):
        log = open(logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        procs[name] = subprocess.Popen(
            cmd, env={**env, **extra}, stdout=log, stderr=subprocess.STDOUT, cwd=cwd
        )

    cli = [sys.executable, "-m", "broker.cli.main"]
    try:
        hs_path = tmp / "handshake.json"
        spawn(
            "stack",
            [
                sys.executable,
                __file__,
                "--role",
                "stack",
                "--handshake",
                str(hs_path),
                "--home",
                str(tmp / "stack"),
            ],
            {"ZG_HOME": str(tmp / "stack-home")},
        )
        deadline = time.monotonic() + 300
        while not hs_path.exists() or not hs_path.read_text():
            if procs["stack"].poll() is not None or time.monotonic() > deadline:
                raise SystemExit("the stack did not start; see " + str(logs / "stack.log"))
            time.sleep(0.2)
        hs = json.loads(hs_path.read_text())
        gw_url = f"http://127.0.0.1:{hs['gateway_port']}"
        spawn(
            "gateway",
            [*cli, "provider", "serve", "--port", str(hs["gateway_port"]), "--host", "127.0.0.1"],
            {
                **hs["gateway_env"],
                "ZG_HOME": str(tmp / "gw-home"),
                "ZG_PROVIDER_PER_IP_RPS": "1000000",
                "ZG_PROVIDER_PER_IP_BURST": "1000000",
                "ZG_PROVIDER_PER_USER_RPM": "1000000000",
                "ZG_PROVIDER_PER_USER_BURST": "1000000",
                "ZG_PROVIDER_MAX_PER_USER_CONCURRENT": "10000",
                "ZG_PROVIDER_MAX_GLOBAL_CONCURRENT": "10000",
            },
        )
        _wait_http(gw_url + "/health", procs["gateway"], "gateway")
        urls = {"direct": gw_url + "/v1/proxy/chat/completions"}
        for mode in ("warn", "off"):
            port = _free_port()
            spawn(
                f"serve-{mode}",
                [
                    *cli,
                    "serve",
                    "--provider",
                    hs["provider"],
                    "--port",
                    str(port),
                    "--verify",
                    mode,
                ],
                {
                    "ZG_HOME": str(tmp / f"serve-{mode}"),
                    "ZG_PRIVATE_KEY": hs["users"][mode],
                    "ZG_NETWORK": "devnet",
                    "ZG_RPC_URL": hs["rpc_url"],
                    "ZG_LEDGER_ADDRESS": hs["ledger"],
                    "ZG_INFERENCE_ADDRESS": hs["inference"],
                },
            )
            urls[f"serve-{mode}"] = f"http://127.0.0.1:{port}/v1/chat/completions"
        if args.floor:
            port = _free_port()
            spawn(
                "relay",
                [
                    sys.executable,
                    __file__,
                    "--role",
                    "relay",
                    "--relay-port",
                    str(port),
                    "--upstream",
                    gw_url,
                ],
                {},
            )
            urls["relay"] = f"http://127.0.0.1:{port}/v1/chat/completions"
            _wait_http(f"http://127.0.0.1:{port}/health", procs["relay"], "relay", method="GET")
        for mode in ("warn", "off"):
            _wait_http(
                urls[f"serve-{mode}"].rsplit("/v1/", 1)[0] + "/health",
                procs[f"serve-{mode}"],
                f"serve --verify {mode}",
            )
        if ts_skip is None:
            port = _free_port()
            ts_home = tmp / "ts-home"
            (ts_home / ".0g-compute-cli").mkdir(parents=True)
            fd = os.open(
                ts_home / ".0g-compute-cli" / "config.json",
                os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                0o600,
            )
            with os.fdopen(fd, "w") as f:
                json.dump(
                    {
                        "privateKey": hs["users"]["ts"],
                        "rpcEndpoint": hs["rpc_url"],
                        "network": "custom",
                    },
                    f,
                )
            spawn(
                "ts",
                [
                    "node",
                    str(TS_CLI),
                    "inference",
                    "serve",
                    "--provider",
                    hs["provider"],
                    "--rpc",
                    hs["rpc_url"],
                    "--ledger-ca",
                    hs["ledger"],
                    "--inference-ca",
                    hs["inference"],
                    "--port",
                    str(port),
                    "--host",
                    "127.0.0.1",
                ],
                {"HOME": str(ts_home), "ZG_RPC_ENDPOINT": hs["rpc_url"]},
                cwd=SDK_DIR,
            )
            urls["ts"] = f"http://127.0.0.1:{port}/v1/chat/completions"
            _wait_http(urls["ts"], procs["ts"], "TS serve", method="POST")

        from broker.broker import create_broker

        broker = create_broker(
            hs["users"]["warn"],
            network="devnet",
            rpc_url=hs["rpc_url"],
            ledger_address=hs["ledger"],
            inference_address=hs["inference"],
        )
        auth = broker.inference.get_request_headers(hs["provider"])
        broker.inference.close()
        headers = {name: (auth if name in ("direct", "relay") else {}) for name in urls}
        servers = {"gateway": "gateway", **{n: n for n in urls if n != "direct"}}
        rss_idle = {n: _rss_mib(procs[p].pid) for n, p in servers.items()}
        gw_pid, stack_pid = procs["gateway"].pid, procs["stack"].pid
        rpc_before = httpx.get(hs["rpc_url"] + "/counts").json()
        if args.profile:
            spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
            procs["py-spy"] = subprocess.Popen(
                [
                    spy,
                    "record",
                    "-p",
                    str(procs[args.profile].pid),
                    "-o",
                    str(args.profile_out),
                    "-r",
                    "200",
                    "--format",
                    "raw" if args.profile_out.suffix == ".txt" else "flamegraph",
                    *(["--gil"] if args.profile_gil else []),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        t_load = time.monotonic()

        async def run_all() -> tuple[list[dict], dict]:
            results = []
            counts = httpx.AsyncClient(timeout=10)
            rpc_counts_url = hs["rpc_url"] + "/counts"
            clients = {n: _LoadClient(args.client, headers[n]) for n in urls}
            try:
                for n, c in clients.items():  # warm connections and caches
                    for _ in range(3):
                        await c.post(urls[n])
                for level in [int(x) for x in args.levels.split(",")]:
                    acc = {
                        n: {
                            "lat": [],
                            "errors": 0,
                            "seconds": 0.0,
                            "gw_cpu": 0.0,
                            "own_cpu": 0.0,
                            "rpcs": 0,
                            "load_cpu": 0.0,
                            "stack_cpu": 0.0,
                        }
                        for n in urls
                    }
                    for _round in range(args.rounds):
                        for n, url in urls.items():
                            rpc0 = sum((await counts.get(rpc_counts_url)).json().values())
                            cpu0 = _proc_cpu_s(gw_pid)
                            own0 = _proc_cpu_s(procs[n].pid) if n in procs else 0.0
                            load0, stack0 = time.process_time(), _proc_cpu_s(stack_pid)
                            lat, err, secs = await _slice(
                                clients[n], url, level, args.requests, args.seconds
                            )
                            acc[n]["load_cpu"] += time.process_time() - load0
                            acc[n]["stack_cpu"] += _proc_cpu_s(stack_pid) - stack0
                            acc[n]["gw_cpu"] += _proc_cpu_s(gw_pid) - cpu0
                            if n in procs:
                                acc[n]["own_cpu"] += _proc_cpu_s(procs[n].pid) - own0
                            acc[n]["rpcs"] += (
                                sum((await counts.get(rpc_counts_url)).json().values()) - rpc0
                            )
                            acc[n]["lat"] += lat
                            acc[n]["errors"] += err
                            acc[n]["seconds"] += secs
                    row = {"clients": level, "targets": {}}
                    for n, a in acc.items():
                        p50, p99 = _quantiles(a["lat"])
                        done = len(a["lat"])
                        row["targets"][n] = {
                            "requests": done,
                            "errors": a["errors"],
                            "rps": round(done / a["seconds"], 1) if a["seconds"] else 0.0,
                            "p50_ms": round(p50, 2),
                            "p99_ms": round(p99, 2),
                            "gateway_cpu_ms_per_request": round(a["gw_cpu"] * 1000 / done, 2)
                            if done
                            else None,
                            "proxy_cpu_ms_per_request": round(a["own_cpu"] * 1000 / done, 2)
                            if done and n in procs
                            else None,
                            "load_generator_cpu_ms_per_request": round(
                                a["load_cpu"] * 1000 / done, 2
                            )
                            if done
                            else None,
                            "stack_cpu_ms_per_request": round(a["stack_cpu"] * 1000 / done, 2)
                            if done
                            else None,
                            "chain_rpcs_per_request": round(a["rpcs"] / (done + a["errors"]), 3)
                            if done + a["errors"]
                            else None,
                        }
                    d = row["targets"]["direct"]
                    for n, t in row["targets"].items():
                        if n != "direct":
                            t["added_p50_ms"] = round(t["p50_ms"] - d["p50_ms"], 2)
                            t["added_p99_ms"] = round(t["p99_ms"] - d["p99_ms"], 2)
                            if "ts" in row["targets"] and n != "ts" and row["targets"]["ts"]["rps"]:
                                t["rate_vs_ts"] = round(t["rps"] / row["targets"]["ts"]["rps"], 2)
                    results.append(row)
                    print(json.dumps(row), flush=True)
                stream = {}
                ttfbs: dict[str, list[float]] = {n: [] for n in urls}
                # interleaved like the load rounds: batches of STREAM_BATCH requests per target in
                # turn, so that a change of machine state during the run reaches every target
                left = args.stream_requests
                while left > 0:
                    batch = min(STREAM_BATCH, left)
                    for n, url in urls.items():
                        ttfbs[n] += await _ttfb(clients[n], url, batch)
                    left -= batch
                for n, ttfb in ttfbs.items():
                    p50, p99 = _quantiles(ttfb)
                    stream[n] = {
                        "requests": len(ttfb),
                        "ttfb_p50_ms": round(p50, 2),
                        "ttfb_p99_ms": round(p99, 2),
                    }
                return results, stream
            finally:
                for c in [*clients.values(), counts]:
                    await c.aclose()

        results, stream = asyncio.run(run_all())
        load_s = time.monotonic() - t_load
        rpc_after = httpx.get(hs["rpc_url"] + "/counts").json()
        rss_load = {n: _rss_mib(procs[p].pid) for n, p in servers.items()}
    finally:
        spy_proc = procs.pop("py-spy", None)
        if spy_proc is not None:
            spy_proc.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            spy_proc.wait(60)
        for p in reversed(list(procs.values())):
            p.terminate()
        for p in reversed(list(procs.values())):
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
    total_requests = sum(
        t["requests"] + t["errors"] for r in results for t in r["targets"].values()
    ) + sum(s["requests"] for s in stream.values())
    rpc_delta = {m: rpc_after.get(m, 0) - rpc_before.get(m, 0) for m in rpc_after}
    rpc_delta = {m: c for m, c in rpc_delta.items() if c}
    rpc_total = sum(rpc_delta.values())

    def fmt(v, spec=">7.1f"):
        return format(v, spec) if isinstance(v, (int, float)) else f"{'-':>7}"

    names = list(urls)
    print()
    print(
        "clients | target      |  p50 ms |  p99 ms | +p50 ms | +p99 ms |     rps | "
        "ours/TS | gw CPU ms/req | proxy CPU ms/req | load CPU | stack CPU | RPCs/req | errors"
    )
    for r in results:
        for n in names:
            t = r["targets"][n]
            print(
                f"{r['clients']:>7} | {n:<11} | {fmt(t['p50_ms'])} | {fmt(t['p99_ms'])} | "
                f"{fmt(t.get('added_p50_ms'))} | {fmt(t.get('added_p99_ms'))} | "
                f"{fmt(t['rps'])} | {fmt(t.get('rate_vs_ts'), '>7.2f')} | "
                f"{fmt(t['gateway_cpu_ms_per_request'], '>13.2f')} | "
                f"{fmt(t.get('proxy_cpu_ms_per_request'), '>16.2f')} | "
                f"{fmt(t['load_generator_cpu_ms_per_request'], '>8.2f')} | "
                f"{fmt(t['stack_cpu_ms_per_request'], '>9.2f')} | "
                f"{fmt(t['chain_rpcs_per_request'], '>8.3f')} | {t['errors']}"
            )
    print("\nstreaming (1 client): time to first body byte, p50 / p99 ms")
    for n in names:
        s = stream[n]
        print(
            f"  {n:<11} {fmt(s['ttfb_p50_ms'])} / {fmt(s['ttfb_p99_ms'])}  "
            f"(+{fmt(s['ttfb_p50_ms'] - stream['direct']['ttfb_p50_ms'], '.2f')} p50)"
        )
    print(
        "\nRSS MiB idle -> after load: "
        + ", ".join(f"{n} {rss_idle[n]} -> {rss_load[n]}" for n in servers)
    )
    print(
        f"chain RPCs during {load_s:.0f} s of load: {rpc_total} for {total_requests} requests "
        f"({rpc_total / max(total_requests, 1):.4f} per request): {rpc_delta}"
    )
    if ts_skip:
        print(f"TS proxy not run: {ts_skip}")
    for url, err in FIRST_ERRORS.items():
        print(f"first error from {url}: {err}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "machine": {
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    "load_avg": os.getloadavg(),
                },
                "route": "chat/completions",
                "client": args.client,
                "rounds": args.rounds,
                "results": results,
                "streaming": stream,
                "rss_mib": {"idle": rss_idle, "after_load": rss_load},
                "chain_rpcs": {
                    "during_load": rpc_delta,
                    "total": rpc_total,
                    "requests": total_requests,
                    "load_seconds": round(load_s, 1),
                },
                "ts_skipped": ts_skip,
                "first_errors": FIRST_ERRORS,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
