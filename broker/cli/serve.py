"""Top-level ``0g-broker serve`` (the OpenAI-compatible local proxy); registered by
:mod:`broker.cli.main` through :func:`register`."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from broker.cli.context import address_param, make_broker
from broker.cli.output import err, handle_errors

__all__ = ["VerifyChoice", "register"]


class VerifyChoice(StrEnum):
    """``--verify`` values (:data:`broker.proxy.settings.VerifyMode`)."""

    off = "off"
    warn = "warn"
    enforce = "enforce"


@handle_errors
def serve_cmd(
    ctx: typer.Context,
    provider: Annotated[
        str,
        typer.Option(
            "--provider",
            envvar="ZG_SERVE_PROVIDER",
            callback=address_param,
            help="Provider address to serve.",
        ),
    ],
    host: Annotated[str, typer.Option(envvar="ZG_SERVE_HOST", help="Bind address.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=1, max=65535, envvar="ZG_SERVE_PORT", help="Port.")
    ] = 3000,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="ZG_SERVE_API_KEY",
            help="Require clients to send 'Authorization: Bearer <key>'. On the command line the "
            "key is visible to other local users: prefer ZG_SERVE_API_KEY or --api-key-file.",
        ),
    ] = None,
    api_key_file: Annotated[
        Path | None,
        typer.Option(
            "--api-key-file",
            envvar="ZG_SERVE_API_KEY_FILE",
            help="Read the API key from this file (first line; keep it mode 600).",
        ),
    ] = None,
    verify: Annotated[
        VerifyChoice,
        typer.Option(
            envvar="ZG_SERVE_VERIFY",
            help="Response verification: off, warn (report only) or enforce (refuse).",
        ),
    ] = VerifyChoice.warn,
    auto_funding: Annotated[
        bool,
        typer.Option(
            "--auto-funding/--no-auto-funding",
            envvar="ZG_SERVE_AUTO_FUNDING",
            help="Top up the sub-account in the background.",
        ),
    ] = True,
    images_timeout: Annotated[
        float,
        typer.Option(
            min=0.001, envvar="ZG_SERVE_IMAGES_TIMEOUT", help="Image request timeout, seconds."
        ),
    ] = 600.0,
    chat_timeout: Annotated[
        float,
        typer.Option(
            min=0.001, envvar="ZG_SERVE_CHAT_TIMEOUT", help="Chat request timeout, seconds."
        ),
    ] = 300.0,
) -> None:
    """Run the OpenAI-compatible local proxy for one provider: it pays, signs, verifies and bills
    every request.

    Everything that can be checked at start is checked before any transaction (the port is free,
    a key is configured, the provider is registered with a service type and model serve handles);
    a start that fails there spends nothing."""
    from pydantic import ValidationError

    from broker.proxy.app import serve
    from broker.proxy.errors import ProxyConfigError, ProxyStartupError
    from broker.proxy.settings import ServeSettings
    from broker.proxy.startup import check_port, preflight

    source = ctx.get_parameter_source("api_key")  # typer's own click: compare by name
    if api_key is not None and getattr(source, "name", "") == "COMMANDLINE":
        err.print(
            "warning: --api-key is visible to other local users in the process list; "
            "use ZG_SERVE_API_KEY or --api-key-file"
        )
    if api_key_file is not None and api_key_file.exists() and api_key_file.stat().st_mode & 0o077:
        err.print(
            f"warning: the API key file {api_key_file} is readable by other users (chmod 600 it)"
        )
    try:
        settings = ServeSettings(
            provider=provider,
            host=host,
            port=port,
            api_key=api_key,
            api_key_file=api_key_file,
            verify=verify.value,
            auto_funding=auto_funding,
            images_timeout=images_timeout,
            chat_timeout=chat_timeout,
        )
    except ValidationError as exc:
        raise ProxyConfigError(
            "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        ) from None
    # pre-flight, before anything is sent: port, key, provider, service type, model
    check_port(settings.host, settings.port)
    broker = make_broker(ctx)
    try:
        preflight(broker.inference, settings.provider, settings)
    except BaseException:
        broker.inference.close()
        raise
    err.print(
        f"serving provider {settings.provider} on http://{host}:{port}/v1 "
        f"(verify {settings.verify})"
    )
    try:
        serve(broker, settings)
    except SystemExit as exc:  # uvicorn exits 3 when a start-up step fails (logged above)
        if exc.code in (0, None):
            raise
        raise ProxyStartupError(
            f"serve did not start (exit status {exc.code} of the server; see the messages above)"
        ) from None
    finally:
        if broker.inference is not None:
            broker.inference.close()


def register(app: typer.Typer) -> None:
    """Add the top-level ``serve`` command to ``app``."""
    app.command("serve")(serve_cmd)


if __name__ == "__main__":  # ``python -m broker.cli.serve ...`` without the root CLI
    _standalone = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    register(_standalone)
    _standalone()
