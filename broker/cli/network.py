"""``setup-network`` and ``show-network``. Unlike the reference CLI, ``setup-network`` only merges
``network``/``rpc_url`` into the config file and never touches the keystore (§13 item 18)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.table import Table

from broker._exceptions import ConfigError
from broker.broker import resolve_network
from broker.chain.keys import key_source
from broker.cli.context import options
from broker.cli.output import handle_errors, message, out, print_json
from broker.config.networks import PRESETS, get_preset
from broker.config.settings import config_file, save_config

__all__ = ["register"]


def setup_network(
    ctx: typer.Context,
    network: Annotated[
        str | None, typer.Option("--network", help=f"One of: {', '.join(PRESETS)}.")
    ] = None,
    rpc: Annotated[str | None, typer.Option("--rpc", help="Custom RPC URL to save.")] = None,
) -> None:
    """Choose the default network (saved in the config file; the keystore is kept)."""
    opts = options(ctx)
    name = network or opts.network
    if name is None:
        if not sys.stdin.isatty():
            raise ConfigError("pass --network (one of: " + ", ".join(PRESETS) + ")")
        name = typer.prompt("Network", default="mainnet")
    preset = get_preset(name)
    values: dict[str, object] = {"network": preset.name}
    rpc_url = rpc or opts.rpc
    values["rpc_url"] = rpc_url  # None clears a previous custom RPC
    path = save_config(values)
    message(f"Network set to {preset.name} (config: {path})", style="green")


def show_network(
    ctx: typer.Context, as_json: Annotated[bool, typer.Option("--json")] = False
) -> None:
    """Show the network, RPC URL and contract addresses in use (no connection made)."""
    opts = options(ctx)
    settings = opts.settings()
    info: dict[str, object] = {
        "network": opts.network or settings.network,
        "config_file": str(config_file()),
        "key_source": key_source(None, settings=settings),
    }
    try:
        net = resolve_network(
            opts.network,
            rpc_url=opts.rpc,
            ledger_address=opts.ledger_ca,
            inference_address=opts.inference_ca,
            settings=settings,
        )
        info.update(
            network=net.name,
            chain_id=net.chain_id,
            rpc_url=net.rpc_url,
            ledger_address=net.ledger_address,
            inference_address=net.inference_address,
        )
    except ConfigError as exc:
        info["error"] = str(exc)
    if opts.json or as_json:
        print_json(info)
        return
    table = Table(title="Network")
    table.add_column("Setting")
    table.add_column("Value")
    for key, value in info.items():
        table.add_row(key, "" if value is None else str(value))
    out.print(table)
    presets = Table(title="Presets")
    for col in ("name", "chain id", "rpc"):
        presets.add_column(col)
    for p in PRESETS.values():
        presets.add_row(p.name, str(p.chain_id), p.rpc_url or "(devnet state)")
    out.print(presets)


def register(app: typer.Typer) -> None:
    """Add the network commands to ``app``."""
    app.command("setup-network")(handle_errors(setup_network))
    app.command("show-network")(handle_errors(show_network))
