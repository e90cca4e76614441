"""Top-level ``0g-broker demo``: the main job in one command (:func:`broker.stacks.demo.run_demo`);
registered by :mod:`broker.cli.main` through :func:`register`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from broker._exceptions import InputError
from broker.cli.context import options
from broker.cli.output import handle_errors, print_json

__all__ = ["register"]


@handle_errors
def demo_cmd(
    ctx: typer.Context,
    prompt: Annotated[str, typer.Option(help="Image prompt.")] = (
        "a red fox in the snow, watercolor"
    ),
    out: Annotated[Path, typer.Option(help="PNG file to write.")] = Path("demo.png"),
    model: Annotated[
        str,
        typer.Option(help="Worker model: 'tiny' (offline test weights) or a local Z-Image folder."),
    ] = "tiny",
    size: Annotated[
        str | None, typer.Option(help="WIDTHxHEIGHT (default: 512x512, the SDK's).")
    ] = None,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep everything running until Ctrl-C.")
    ] = False,
) -> None:
    """The main job in one command: devnet, tiny worker, provider gateway and serve; one image
    generated with the openai client through serve, paid and verified; then everything stopped."""
    import signal

    from broker.stacks.demo import check_demo_options, run_demo

    try:  # pre-flight: bad values are usage errors, found before anything starts
        check_demo_options(model, size)
    except InputError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--size' / '--model'") from None

    def _terminate(_sig, _frame):  # SIGTERM / SIGHUP: unwind like Ctrl-C so everything stops
        raise KeyboardInterrupt

    previous = {s: signal.signal(s, _terminate) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        result = run_demo(prompt, out, model=model, keep=keep, size=size)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if options(ctx).json:
        print_json(
            {
                "out": str(result.out),
                "fee": str(result.fee),
                "verified": result.verified,
                "chat_id": result.chat_id,
                "provider": result.provider,
            }
        )


def register(app: typer.Typer) -> None:
    """Add the top-level ``demo`` command to ``app``."""
    app.command("demo")(demo_cmd)
