"""The main job in one command (``0g-broker demo``): devnet → tiny worker + provider gateway →
``serve`` → one image generated with the official ``openai`` client through ``serve``, paid, signed,
verified and billed → PNG written → everything stopped. ``serve`` requires a random API key known
only to this process (with ``keep``, written to a mode-0600 file whose path is printed).

Everything runs in this process (anvil as a child process, the servers as uvicorn threads through
:class:`~broker.stacks.servers.LocalServer`) inside context managers, so nothing is left behind on
success, failure or Ctrl-C. ``keep=True`` keeps the
whole stack serving in the foreground until Ctrl-C instead of stopping at once.
"""

from __future__ import annotations

import base64
import os
import secrets
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.text import Text

from broker.ports import free_port
from broker.proxy.errors import ProxyConfigError
from broker.stacks.provider_stack import check_worker_model, start_provider_stack
from broker.stacks.servers import HOST, LocalServer
from broker.units import format_0g
from broker.worker.pipelines.loader import limits_for

__all__ = ["DemoResult", "check_demo_options", "run_demo"]

ZG = 10**18


@dataclass(frozen=True)
class DemoResult:
    """What the demo did.

    Attributes:
        out: the PNG written. fee: neuron accounted for the image (the ``X-0G-Fee`` header).
        verified: ``X-0G-Verified`` (``"true"`` when the TEE signature matched). chat_id: the
        ``ZG-Res-Key``. provider: provider address. serve_url: where ``serve`` listened.
    """

    out: Path
    fee: int
    verified: str
    chat_id: str
    provider: str
    serve_url: str


def _write_key_file(path: Path, key: str) -> Path:
    """Write ``key`` to ``path`` readable by the owner only (mode 0600 from creation)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    return path


def check_demo_options(model: str, size: str | None) -> tuple[int, int]:
    """Pre-flight of ``demo``, before anything starts: the worker model exists
    (:func:`broker.stacks.provider_stack.check_worker_model`) and ``size`` is ``WIDTHxHEIGHT``
    within the model's limits (:func:`broker.worker.pipelines.loader.limits_for`).

    Args:
        model: worker model (``"tiny"``, a folder, a Hub id). size: ``"WIDTHxHEIGHT"`` or ``None``
            (the model's default size).

    Returns:
        ``(width, height)`` in pixels.

    Raises:
        InputError: a missing model folder, a malformed size or one outside the model's limits.
    """
    import re

    from broker._exceptions import InputError

    check_worker_model(model)
    limits = limits_for(model)
    if size is None:
        return limits.default_size
    match = re.fullmatch(r"\s*(\d{1,5})\s*[xX]\s*(\d{1,5})\s*", size)
    if not match:
        raise InputError(
            f"size {size!r} is not WIDTHxHEIGHT (e.g. "
            f"{limits.default_size[0]}x{limits.default_size[1]})"
        )
    width, height = int(match[1]), int(match[2])
    low, high, step = limits.min_side, limits.max_side, limits.size_multiple
    for side in (width, height):
        if not low <= side <= high or side % step:
            raise InputError(
                f"size {width}x{height} is outside what model {model!r} draws: each side from "
                f"{low} to {high} px in steps of {step} (default "
                f"{limits.default_size[0]}x{limits.default_size[1]})"
            )
    return width, height


def run_demo(
    prompt: str,
    out: Path,
    *,
    model: str = "tiny",
    keep: bool = False,
    size: str | None = None,
    console: Console | None = None,
) -> DemoResult:
    """Run the demo end to end (blocking; a few seconds to a minute with the tiny model on CPU).

    Args:
        prompt: the image prompt. out: PNG path to write (parent folders created).
        model: worker model: ``"tiny"`` (random weights, offline) or a local Z-Image folder / hub
            id.
        keep: after the image, keep everything running until Ctrl-C.
        size: ``WIDTHxHEIGHT`` (default: none sent, so serve uses the SDK's 512x512).
        console: progress output (default stderr).

    Returns:
        :class:`DemoResult`.

    Raises:
        InputError: bad ``model`` or ``size`` (:func:`check_demo_options`, before anything starts).
        ProxyConfigError (the ``[demo]`` extra — openai, torch, diffusers — is not installed),
        DevnetError (anvil missing: run ``scripts/setup``; ServerStartError: a server did not
        start), ProxyStartupError, openai errors from the image request.
    """
    check_demo_options(model, size)
    try:
        import openai
        import torch  # noqa: F401 - the tiny worker runs in this process
    except ImportError as exc:
        raise ProxyConfigError(
            f"the demo needs the [demo] extra ({exc.name} is missing): "
            "pip install '0g-broker[demo]' (or run scripts/setup)"
        ) from None

    from broker.broker import create_broker
    from broker.devnet import fund_new_account, start_devnet
    from broker.proxy.app import create_app
    from broker.proxy.settings import ServeSettings

    console = console or Console(stderr=True)
    out = Path(out)

    def ok(text: str) -> None:
        console.print(Text("✓ ", style="green") + Text(text))

    with tempfile.TemporaryDirectory(prefix="0g-demo-") as tmp:
        home = Path(tmp)
        with console.status("starting the devnet (anvil + contracts)…"):
            net = start_devnet(port=0, state_file=home / "devnet" / "state.json")
        with net:
            state = net.state
            ok(f"devnet at {state.rpc_url}")
            with console.status(f"starting the worker ({model}) and the provider gateway…"):
                stack = start_provider_stack(state, model=model, home=home / "provider")
            with stack:
                ok(
                    f"provider {stack.provider_address} at {stack.gateway_url} "
                    f"({format_0g(stack.service.output_price)} 0G per image)"
                )
                with console.status("creating a user account with a 10 0G ledger…"):
                    user = fund_new_account(state, 100 * ZG)
                    broker = create_broker(
                        "0x" + bytes(user.key).hex(),
                        network="devnet",
                        rpc_url=state.rpc_url,
                        ledger_address=state.ledger_address,
                        inference_address=state.inference_address,
                    )
                    broker.ledger.add_ledger(10)
                ok(f"user {broker.address}: ledger of 10 0G")
                try:
                    # a one-off key, in-process only (never on a command line or printed)
                    api_key = secrets.token_urlsafe(24)
                    settings = ServeSettings(
                        provider=stack.provider_address, port=free_port(HOST), api_key=api_key
                    )
                    app = create_app(broker, settings, console=console)
                    with LocalServer.in_thread(
                        app, name="serve", port=settings.port, lifespan="on"
                    ) as server:
                        ok(
                            f"serve at {server.url}/v1 (OpenAI-compatible); "
                            f"dashboard {server.url}/ui/"
                        )
                        client = openai.OpenAI(
                            base_url=server.url + "/v1", api_key=api_key, max_retries=0, timeout=900
                        )
                        # No size: serve fills the SDK's 512x512 (about a second with the tiny
                        # model on CPU).
                        extra = {"size": size} if size else {}
                        with console.status(f"generating '{prompt}' through serve…"):
                            raw = client.images.with_raw_response.generate(
                                prompt=prompt, n=1, response_format="b64_json", **extra
                            )
                        image = raw.parse()
                        out.parent.mkdir(parents=True, exist_ok=True)
                        out.write_bytes(base64.b64decode(image.data[0].b64_json or ""))
                        result = DemoResult(
                            out=out,
                            fee=int(raw.headers.get("X-0G-Fee", "0")),
                            verified=raw.headers.get("X-0G-Verified", "none"),
                            chat_id=raw.headers.get("ZG-Res-Key", ""),
                            provider=stack.provider_address,
                            serve_url=server.url,
                        )
                        ok(f"wrote {out} ({out.stat().st_size} bytes)")
                        ok(
                            f"paid {format_0g(result.fee)} 0G; response signature verified: "
                            f"{result.verified} (ZG-Res-Key {result.chat_id})"
                        )
                        if keep:
                            key_file = _write_key_file(home / "serve_api_key", api_key)
                            console.print(
                                f"running: serve {server.url}/v1 (API key in "
                                f"{key_file}), gateway {stack.gateway_url}, devnet "
                                f"{state.rpc_url}; Ctrl-C stops everything"
                            )
                            try:
                                while server.alive:
                                    time.sleep(0.5)
                            except KeyboardInterrupt:
                                pass
                finally:
                    broker.inference.close()
        console.print("stopped everything the demo started")
    return result
