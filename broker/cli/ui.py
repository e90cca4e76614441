"""``0g-broker ui [--port 3090] [--host 127.0.0.1]`` (also ``ui start-web``, the name of
``0g-compute-cli ui start-web``): the web dashboard on its own, with deposit / transfer / refund
behind a confirmation (:mod:`broker.ui.standalone`). Mounted by :mod:`broker.cli.main` as the ``ui``
group."""

from __future__ import annotations

from typing import Annotated

import typer

from broker.cli.context import make_broker
from broker.cli.output import err, handle_errors

__all__ = ["app"]

app = typer.Typer(
    help="The web dashboard (account, providers, verification, moving funds).",
    invoke_without_command=True,
)

HostOpt = Annotated[str, typer.Option(help="Bind address (127.0.0.1: this machine only).")]
PortOpt = Annotated[int, typer.Option(min=0, max=65535, help="Port.")]


def _run(ctx: typer.Context, host: str, port: int) -> None:
    from broker.ui.standalone import serve_ui

    if host not in ("127.0.0.1", "localhost", "::1"):
        err.print(
            f"warning: binding {host} exposes the dashboard, which can move funds, to "
            "other machines; the page only accepts actions from its own origin"
        )
    broker = make_broker(ctx)
    err.print(
        f"dashboard: http://{'[' + host + ']' if ':' in host else host}:{port}/ui/ "
        "(Ctrl-C stops it)"
    )
    try:
        serve_ui(broker, host=host, port=port)
    finally:
        if getattr(broker, "inference", None) is not None:
            broker.inference.close()


@app.callback()
@handle_errors
def ui(ctx: typer.Context, host: HostOpt = "127.0.0.1", port: PortOpt = 3090) -> None:
    """Serve the dashboard at http://HOST:PORT/ui/ until Ctrl-C."""
    if ctx.invoked_subcommand is None:
        _run(ctx, host, port)


@app.command("start-web")
@handle_errors
def start_web(ctx: typer.Context, host: HostOpt = "127.0.0.1", port: PortOpt = 3090) -> None:
    """The same as `0g-broker ui` (the official CLI's name)."""
    _run(ctx, host, port)
