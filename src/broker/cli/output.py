"""CLI output helpers: data on stdout, messages on stderr, one-line red errors, JSON amounts."""

from __future__ import annotations

import functools
import json
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from broker._exceptions import BrokerError
from broker.units import format_0g

__all__ = ["amount_fields", "err", "handle_errors", "message", "out", "print_json"]

#: stdout: data (tables, JSON).
out = Console(soft_wrap=True)
#: stderr: progress and messages.
err = Console(stderr=True, soft_wrap=True)

F = TypeVar("F", bound=Callable[..., Any])


def message(text: str, *, style: str | None = None) -> None:
    """Print a progress/status line on stderr (no markup interpretation)."""
    err.print(Text(text, style=style or ""))


def print_json(data: Any) -> None:
    """Print ``data`` as JSON on stdout (plain, no colour)."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def amount_fields(name: str, neuron: int) -> dict[str, str]:
    """``{name: "<neuron>", name_0g: "<0G decimal>"}`` for JSON output."""
    return {name: str(int(neuron)), f"{name}_0g": format_0g(int(neuron))}


def handle_errors(fn: F) -> F:
    """Decorate a command: a :class:`BrokerError` becomes one red line on stderr and exit code 1
    (``ZG_DEBUG=1`` also prints the traceback); Ctrl-C exits 130."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except BrokerError as exc:
            if os.environ.get("ZG_DEBUG", "").lower() in ("1", "true", "yes"):
                traceback.print_exc()
            text = " ".join(str(exc).split()) or type(exc).__name__
            err.print(Text(f"✗ {text}", style="bold red"))
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            err.print(Text("interrupted", style="red"))
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]
