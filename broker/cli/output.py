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

__all__ = [
    "amount_fields",
    "err",
    "error_line",
    "handle_errors",
    "message",
    "out",
    "print_json",
    "report_error",
]

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


def _debug() -> bool:
    return os.environ.get("ZG_DEBUG", "").lower() in ("1", "true", "yes")


def error_line(exc: BaseException) -> str:
    """The one-line text the CLI shows for ``exc``: its message on one line plus, for a
    :class:`BrokerError` with a ``hint``, ``(hint: ...)``; other exceptions are prefixed with
    their class name (an unexpected error, never a traceback)."""
    text = " ".join(str(exc).split())
    if isinstance(exc, BrokerError):
        text = text or type(exc).__name__
        hint = getattr(exc, "hint", None)
        if hint:
            text = f"{text} (hint: {' '.join(str(hint).split())})"
        return text
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def report_error(exc: BaseException) -> int:
    """Print ``exc`` as one red line on stderr (``ZG_DEBUG=1``: the traceback first) and return
    the exit code: 130 for Ctrl-C, else 1."""
    if isinstance(exc, KeyboardInterrupt):
        err.print(Text("interrupted", style="red"))
        return 130
    if _debug():
        traceback.print_exception(exc)
    err.print(Text(f"✗ {error_line(exc)}", style="bold red"))
    return 1


def handle_errors(fn: F) -> F:
    """Decorate a command: a :class:`BrokerError` becomes one red line on stderr and exit code 1
    (``ZG_DEBUG=1`` also prints the traceback); Ctrl-C exits 130. (The root command group does the
    same for any other exception: :class:`broker.cli.main.RootGroup`.)"""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (BrokerError, KeyboardInterrupt) as exc:
            raise typer.Exit(report_error(exc)) from None

    return wrapper  # type: ignore[return-value]
