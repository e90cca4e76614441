"""``0g-broker devnet up | down | status``: the embedded local chain (anvil + our contracts).

Messages go to stderr (rich), data to stdout. Exit status 0 on success, 1 with a one-line error, 2
on a usage error; ``devnet status`` exits 1 when the devnet is not running (its ``--json`` still
prints ``"running": false``), so scripts can test it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from broker._exceptions import BrokerError, InputError
from broker.devnet import load_devnet_state
from broker.stacks.local_devnet import devnet_down, devnet_status, devnet_up

__all__ = ["app"]

app = typer.Typer(
    help="Run a local devnet: anvil on 127.0.0.1 with the 0G serving contracts.",
    no_args_is_help=True,
)
_err = Console(stderr=True)

_StateFile = Annotated[
    Path | None,
    typer.Option("--state-file", help="State file (default $ZG_HOME/devnet/state.json)."),
]
_ShowKeys = Annotated[
    bool, typer.Option("--show-keys", help="Include the dev accounts' private keys.")
]


def _fail(exc: BrokerError) -> None:
    # the message is printed as plain text: brackets in it ("[worker]") are not rich markup
    _err.print(
        Text("error: ", style="red") + Text(" ".join(str(exc).split())),
        highlight=False,
        soft_wrap=True,
    )
    raise typer.Exit(1)


@app.command()
def up(
    port: Annotated[
        int,
        typer.Option("--port", min=0, max=65535, help="Port on 127.0.0.1 (0: any free port)."),
    ] = 8545,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the devnet state as JSON.")
    ] = False,
    show_keys: _ShowKeys = False,
    with_provider: Annotated[
        bool,
        typer.Option(
            "--with-provider",
            help="Also start a provider (Z-Image worker + gateway) registered and acknowledged "
            "on chain.",
        ),
    ] = False,
    model: Annotated[
        str,
        typer.Option(
            "--model", help="Worker model with --with-provider ('tiny': random weights, CPU)."
        ),
    ] = "tiny",
    state_file: _StateFile = None,
) -> None:
    """Start the devnet (or reuse a running one) and deploy the contracts."""
    try:
        with _err.status("starting devnet..."):
            state = devnet_up(
                port=port, state_file=state_file, with_provider=with_provider, model=model
            )
    except InputError as exc:
        raise typer.BadParameter(str(exc), param_hint="'--model'") from None
    except BrokerError as exc:
        _fail(exc)
    if json_out:
        typer.echo(json.dumps(state.public_dict(show_keys=show_keys), indent=2))
        return
    _err.print(
        f"devnet running at {state.rpc_url} (chain {state.chain_id}, pid {state.anvil_pid})",
        highlight=False,
    )
    typer.echo(f"rpc_url={state.rpc_url}")
    typer.echo(f"ledger_address={state.ledger_address}")
    typer.echo(f"inference_address={state.inference_address}")
    if state.provider is not None:
        _echo_provider(state.provider.model_dump(mode="json"))


def _echo_provider(provider: dict) -> None:
    typer.echo(f"provider_address={provider['address']}")
    typer.echo(f"provider_gateway_url={provider['gateway_url']}")
    typer.echo(f"provider_worker_url={provider['worker_url']}")
    typer.echo(f"provider_model={provider['model']}")


@app.command()
def down(state_file: _StateFile = None) -> None:
    """Stop the devnet and remove its state."""
    try:
        stopped = devnet_down(state_file)
    except BrokerError as exc:
        _fail(exc)
    _err.print("devnet stopped" if stopped else "devnet was not running", highlight=False)


@app.command()
def status(
    json_out: Annotated[bool, typer.Option("--json", help="Print the status as JSON.")] = False,
    show_keys: _ShowKeys = False,
    state_file: _StateFile = None,
) -> None:
    """Show whether the devnet runs, and its addresses. Exit status 1 when it is not running."""
    info = devnet_status(state_file)
    if show_keys and info["running"]:
        try:
            info["state"] = load_devnet_state(state_file).public_dict(show_keys=True)
        except BrokerError as exc:
            _fail(exc)
    if json_out:
        typer.echo(json.dumps(info, indent=2))
        if not info["running"]:
            raise typer.Exit(1)
        return
    if not info["running"]:
        _err.print("devnet is not running; run `0g-broker devnet up`", highlight=False)
        raise typer.Exit(1)
    state = info["state"]
    typer.echo(
        f"running: {state['rpc_url']} (chain {state['chain_id']}, block {info['block_number']})"
    )
    typer.echo(f"ledger_address={state['ledger_address']}")
    typer.echo(f"inference_address={state['inference_address']}")
    if info["provider"] is not None:
        _echo_provider(info["provider"])
        typer.echo(f"provider_running={str(info['provider']['running']).lower()}")
