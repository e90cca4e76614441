"""The ``0g-broker`` command line (typer). Command names follow ``0g-compute-cli``.

Global options come before the command: ``0g-broker --network devnet --json get-account``.
Exit codes: 0 success, 1 a :class:`~broker._exceptions.BrokerError` (one red line on stderr;
``ZG_DEBUG=1`` adds the traceback), 2 usage errors. Data goes to stdout, messages to stderr.
"""

from __future__ import annotations

import importlib
from typing import Annotated, Any

import click
import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

from broker._exceptions import BrokerError
from broker.cli.context import CliOptions
from broker.cli.output import report_error

__all__ = ["RootGroup", "app", "main"]


#: Exceptions that carry their own exit code (usage errors: 2; ``typer.Exit``): not ours to report.
_PASS_THROUGH = (
    TyperException,
    typer.Exit,
    typer.Abort,
    click.exceptions.ClickException,
    click.exceptions.Exit,
    click.exceptions.Abort,
)


class RootGroup(TyperGroup):
    """The root command group: every command runs through :meth:`invoke`, so any error that a
    command lets through (a :class:`~broker._exceptions.BrokerError` or anything unexpected) ends
    as one line on stderr and exit 1, never a traceback (``ZG_DEBUG=1`` prints it); click's own
    usage errors keep exit 2."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except _PASS_THROUGH:
            raise
        except Exception as exc:  # noqa: BLE001 - the one place turning errors into exit codes
            raise typer.Exit(report_error(exc)) from None
        except KeyboardInterrupt as exc:
            raise typer.Exit(report_error(exc)) from None
        except SystemExit as exc:  # a server (uvicorn) exiting 3 when its start-up failed
            if not isinstance(exc.code, int) or exc.code in (0, 1, 2, 130):
                raise
            report_error(
                BrokerError(
                    f"the server did not start (its exit status {exc.code}; see the messages above)"
                )
            )
            raise typer.Exit(1) from None


app = typer.Typer(
    cls=RootGroup,
    name="0g-broker",
    help="Python broker for the 0G Compute Network.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _global(
    ctx: typer.Context,
    network: Annotated[
        str | None,
        typer.Option(
            "--network",
            envvar="ZG_NETWORK",
            help="Network preset (mainnet, testnet, testnet-dev, hardhat, devnet); default from "
            "the config file, else mainnet.",
        ),
    ] = None,
    rpc: Annotated[str | None, typer.Option("--rpc", help="JSON-RPC URL override.")] = None,
    ledger_ca: Annotated[
        str | None, typer.Option("--ledger-ca", help="LedgerManager address override.")
    ] = None,
    inference_ca: Annotated[
        str | None, typer.Option("--inference-ca", help="InferenceServing address override.")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    gas_price: Annotated[
        int | None, typer.Option("--gas-price", min=0, help="Gas price in neuron (wei) per gas.")
    ] = None,
    max_gas_price: Annotated[
        int | None,
        typer.Option("--max-gas-price", min=0, help="Cap for gas-price bumps, neuron per gas."),
    ] = None,
) -> None:
    ctx.obj = CliOptions(
        network=network,
        rpc=rpc,
        ledger_ca=ledger_ca,
        inference_ca=inference_ca,
        json=json_out,
        gas_price=gas_price,
        max_gas_price=max_gas_price,
    )


#: Every area's CLI module, mounted in this order (the one mounting path; CONTRIBUTING.md). A module
#: with a typer ``app`` is mounted as a sub-command group under the given name (and, hidden, under
#: each name in its optional ``ALIASES``); otherwise its ``register(app)`` adds top-level commands.
AREA_MODULES: tuple[tuple[str, str], ...] = (
    ("network", "broker.cli.network"),
    ("login", "broker.cli.login"),
    ("ledger", "broker.cli.ledger"),
    ("devnet", "broker.cli.devnet"),
    ("inference", "broker.cli.inference"),
    ("inference", "broker.cli.inference_group"),
    ("verify", "broker.cli.verify"),
    ("serve", "broker.cli.serve"),
    ("demo", "broker.cli.demo"),
    ("provider", "broker.cli.provider"),
    ("worker", "broker.cli.worker"),
    ("ui", "broker.cli.ui"),
)


def _mount_areas(root: typer.Typer) -> None:
    for name, module_name in AREA_MODULES:
        module = importlib.import_module(module_name)
        if isinstance(getattr(module, "app", None), typer.Typer):
            root.add_typer(module.app, name=name)
            for alias in getattr(module, "ALIASES", ()):
                root.add_typer(module.app, name=alias, hidden=True)
        elif callable(getattr(module, "register", None)):
            module.register(root)
        else:
            raise TypeError(f"{module_name} has neither a typer `app` nor `register(app)`")


_mount_areas(app)


def main() -> None:
    """Console-script entry point (``0g-broker``)."""
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
