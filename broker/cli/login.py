"""``login`` / ``logout`` / ``status``: the encrypted keystore (eth-account v3, mode 0600).

The key is read from a hidden prompt, from an environment variable named by
``--private-key-env``, or from stdin (``--stdin``); the password from ``ZG_KEYSTORE_PASSWORD`` or a
hidden prompt (with confirmation). The reference CLI stores the key in plain text (§11.1).
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from broker._exceptions import KeyStoreError
from broker.chain.keys import create_keystore, key_source, wallet_from_key
from broker.cli.context import options
from broker.cli.output import handle_errors, message, out, print_json

__all__ = ["register"]


def login(
    ctx: typer.Context,
    private_key_env: Annotated[
        str | None,
        typer.Option("--private-key-env", help="Read the key from this environment variable."),
    ] = None,
    stdin: Annotated[bool, typer.Option("--stdin", help="Read the key from stdin.")] = False,
    force: Annotated[
        bool, typer.Option("--force", "-f", help="Replace an existing keystore.")
    ] = False,
) -> None:
    """Save a private key in the encrypted keystore."""
    settings = options(ctx).settings()
    path = settings.keystore_path()
    if path.exists() and not force:
        raise KeyStoreError(f"keystore {path} already exists; use --force to replace it")
    if private_key_env:
        key = os.environ.get(private_key_env)
        if not key:
            raise KeyStoreError(f"environment variable {private_key_env} is empty or not set")
    elif stdin:
        key = sys.stdin.readline().strip()
    else:
        if not sys.stdin.isatty():
            raise KeyStoreError(
                "no terminal to prompt for the private key: pass --stdin or --private-key-env VAR "
                "and set ZG_KEYSTORE_PASSWORD"
            )
        key = typer.prompt("Private key", hide_input=True)
    wallet = wallet_from_key(key)
    if settings.keystore_password is not None:
        password = settings.keystore_password.get_secret_value()
    else:
        if not sys.stdin.isatty():
            raise KeyStoreError(
                "no terminal to prompt for the keystore password: set ZG_KEYSTORE_PASSWORD"
            )
        password = typer.prompt("Keystore password", hide_input=True, confirmation_prompt=True)
    written = create_keystore(key, password, path)
    message(f"Logged in as {wallet.address} (keystore {written})", style="green")
    out.print(wallet.address)


def logout(
    ctx: typer.Context,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete the keystore file."""
    path = options(ctx).settings().keystore_path()
    if not path.exists():
        message("not logged in (no keystore)")
        return
    if not yes and not typer.confirm(f"Delete keystore {path}?"):
        raise typer.Exit(1)
    path.unlink()
    message(f"Keystore {path} deleted", style="green")


def status(ctx: typer.Context) -> None:
    """Show where the key comes from (argument, environment, keystore) without decrypting it."""
    settings = options(ctx).settings()
    source = key_source(None, settings=settings)
    info = {"key_source": source, "keystore": str(settings.keystore_path())}
    if source == "environment" and settings.private_key is not None:
        info["address"] = wallet_from_key(settings.private_key.get_secret_value()).address
    elif source == "keystore":
        import json

        try:
            info["address"] = "0x" + json.loads(settings.keystore_path().read_text())["address"]
        except (OSError, ValueError, KeyError):
            info["address"] = None
    print_json(info) if options(ctx).json else out.print(
        " ".join(f"{k}={v}" for k, v in info.items())
    )


def register(app: typer.Typer) -> None:
    """Add the key commands to ``app``."""
    app.command("login")(handle_errors(login))
    app.command("logout")(handle_errors(logout))
    app.command("status")(handle_errors(status))
