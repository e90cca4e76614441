"""``0g-broker worker``: the Z-Image GPU worker commands (mounted by ``broker.cli.main``)."""

from __future__ import annotations

from typing import Annotated

import typer

from broker.cli.output import handle_errors

__all__ = ["app"]

app = typer.Typer(help="Z-Image GPU worker (OpenAI-compatible image server).", no_args_is_help=True)


@app.callback()
def _worker() -> None:
    """Z-Image GPU worker (OpenAI-compatible image server)."""


@app.command()
@handle_errors
def serve(
    model: Annotated[
        str | None,
        typer.Option(help="'tiny' (random weights, offline), a Hub id or a local directory."),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Bind port (default 8000).")] = None,
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda (default auto).")] = None,
    idle_unload: Annotated[
        float | None,
        typer.Option("--idle-unload", help="Unload the model after S idle seconds (0 = never)."),
    ] = None,
    queue_size: Annotated[
        int | None, typer.Option("--queue-size", help="Jobs allowed to wait (more get HTTP 429).")
    ] = None,
    public_base_url: Annotated[
        str | None, typer.Option("--public-base-url", help="Base URL used in `url` responses.")
    ] = None,
    safety_checker: Annotated[
        str | None,
        typer.Option(
            "--safety-checker",
            help="Image safety checker: 'tiny' (tests), a Hub id or a local directory "
            "(default: none; answers then say no check ran).",
        ),
    ] = None,
) -> None:
    """Serve text-to-image and edits on /v1/images/* (and async jobs on /v1/async/*).

    Unset options come from ZG_WORKER_* environment variables, then the defaults (model
    Tongyi-MAI/Z-Image-Turbo). The model loads on the first image request.
    """
    from pydantic import ValidationError

    from broker.worker.serve import serve as run_server
    from broker.worker.settings import WorkerSettings

    overrides = {
        "model": model,
        "host": host,
        "port": port,
        "device": device,
        "idle_unload_seconds": idle_unload,
        "queue_size": queue_size,
        "public_base_url": public_base_url,
        "safety_checker": safety_checker,
    }
    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        settings = WorkerSettings(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        if field in given:  # a bad command-line option: usage error
            typer.echo(f"Error: invalid {field}: {first['msg']}", err=True)
            raise typer.Exit(2) from None
        # a bad ZG_WORKER_* setting (or a rule across settings): configuration error
        name = f"ZG_WORKER_{field.upper()}" if field else "ZG_WORKER_* settings"
        typer.echo(f"Error: invalid {name}: {first['msg']}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"Z-Image worker: model {settings.model} on http://{settings.host}:{settings.port}")
    run_server(settings)
