"""Ledger commands, named as ``0g-compute-cli`` (``user-broker.md`` §11.2): add-account, deposit,
refund, transfer-fund, retrieve-fund, get-account, get-sub-account. Amounts are 0G decimal strings
(parsed exactly)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

from broker.cli.context import address_param, amount_param, make_broker, options
from broker.cli.output import amount_fields, handle_errors, message, out, print_json
from broker.ledger.models import TxResult
from broker.units import format_0g

__all__ = ["register"]

AmountOpt = Annotated[
    str, typer.Option("--amount", "-a", callback=amount_param, help="Amount in 0G (e.g. 3 or 0.5).")
]
ProviderOpt = Annotated[
    str, typer.Option("--provider", callback=address_param, help="Provider address.")
]
ServiceOpt = Annotated[str, typer.Option("--service", help="Service type or name.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]


def _tx_out(
    ctx: typer.Context, result: TxResult | list[TxResult], text: str, *, as_json: bool = False
) -> None:
    results = result if isinstance(result, list) else [result]
    if options(ctx).json or as_json:
        payload = [
            {"tx_hash": r.tx_hash, "block_number": r.block_number, "gas_used": r.gas_used}
            for r in results
        ]
        print_json({"ok": True, "message": text, "transactions": payload})
        return
    message(text, style="green")
    for r in results:
        out.print(r.tx_hash)


def add_account(
    ctx: typer.Context,
    amount: AmountOpt,
    info: Annotated[str, typer.Option("--info", help="additionalInfo text.")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Create the ledger (main account) with an initial deposit (at least 3 0G)."""
    b = make_broker(ctx)
    result = b.ledger.add_ledger(amount, info)
    _tx_out(ctx, result, "Account Created!", as_json=as_json)


def deposit(ctx: typer.Context, amount: AmountOpt, as_json: JsonOpt = False) -> None:
    """Deposit funds into the ledger (creates it when absent: at least 3 0G then)."""
    b = make_broker(ctx)
    result = b.ledger.deposit_fund(amount)
    _tx_out(ctx, result, f"Deposited funds: {amount} 0G", as_json=as_json)


def refund(ctx: typer.Context, amount: AmountOpt, as_json: JsonOpt = False) -> None:
    """Withdraw from the ledger's available balance to the wallet."""
    b = make_broker(ctx)
    result = b.ledger.refund(amount)
    _tx_out(ctx, result, f"Refunded amount: {amount} 0G", as_json=as_json)


def transfer_fund(
    ctx: typer.Context,
    provider: ProviderOpt,
    amount: AmountOpt,
    service: ServiceOpt = "inference",
    force: Annotated[
        bool,
        typer.Option("--force", help="Transfer even when no service is registered at the address."),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Transfer funds from the ledger to a provider sub-account (at least 1 0G for a new one).
    Refused when no service is registered at the address (a typo would lock the funds) unless
    --force."""
    b = make_broker(ctx)
    result = b.ledger.transfer_fund(provider, service, amount, allow_unregistered=force)
    _tx_out(ctx, result, f"Transferred {amount} 0G to {provider} ({service})", as_json=as_json)


def retrieve_fund(
    ctx: typer.Context,
    service: ServiceOpt = "inference",
    provider: Annotated[
        list[str] | None,
        typer.Option(
            "--provider",
            callback=address_param,
            help="Provider address (repeatable); default: all providers.",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Request refunds from provider sub-accounts and collect matured ones."""
    b = make_broker(ctx)
    results = b.ledger.retrieve_fund(service, provider or None)
    text = (
        f"Refund requested in {len(results)} transaction(s)"
        if results
        else "No provider sub-accounts to retrieve from"
    )
    _tx_out(ctx, results, text, as_json=as_json)


def get_account(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Show the ledger overview and the inference sub-accounts."""
    b = make_broker(ctx)
    overview = b.ledger.get_ledger_with_detail()
    if options(ctx).json or as_json:
        print_json(
            {
                "address": b.address,
                "network": b.network.name,
                **amount_fields("total", overview.total),
                **amount_fields("locked", overview.locked),
                **amount_fields("available", overview.available),
                "inference": [
                    {
                        "provider": s.provider,
                        **amount_fields("balance", s.balance),
                        **amount_fields("pending_refund", s.pending_refund),
                    }
                    for s in overview.inference
                ],
            }
        )
        return
    table = Table(title=f"Overview ({b.address})")
    table.add_column("Balance")
    table.add_column("Value (0G)", justify="right")
    table.add_row("Total", format_0g(overview.total, places=18))
    table.add_row("Locked (transferred to sub-accounts)", format_0g(overview.locked, places=18))
    table.add_row(
        "Available for transfer to sub-accounts", format_0g(overview.available, places=18)
    )
    out.print(table)
    subs = Table(title="Inference sub-accounts")
    subs.add_column("Provider", no_wrap=True, min_width=42)
    subs.add_column("Balance (0G)", justify="right")
    subs.add_column("Requested Return to Main Account (0G)", justify="right")
    for s in overview.inference:
        subs.add_row(
            s.provider, format_0g(s.balance, places=18), format_0g(s.pending_refund, places=18)
        )
    out.print(subs)


def get_sub_account(
    ctx: typer.Context,
    provider: ProviderOpt,
    service: ServiceOpt = "inference",
    as_json: JsonOpt = False,
) -> None:
    """Show one provider sub-account and its pending refunds with their remaining lock time."""
    b = make_broker(ctx)
    detail = b.ledger.get_sub_account_with_detail(provider, service)
    if options(ctx).json or as_json:
        print_json(detail.as_json())
        return
    table = Table(title="Overview")
    table.add_column("Field")
    table.add_column("Value", no_wrap=True, min_width=42)
    table.add_row("Service Type", detail.service_type)
    table.add_row("Provider", detail.provider)
    table.add_row("Balance (0G)", format_0g(detail.balance, places=18))
    table.add_row(
        "Funds Applied for Return to Main Account (0G)", format_0g(detail.pending_refund, places=18)
    )
    out.print(table)
    refunds = Table(title="Details of Each Amount Applied for Return to Main Account")
    refunds.add_column("Amount (0G)", justify="right")
    refunds.add_column("Remaining Locked Time")
    for r in detail.refunds:
        refunds.add_row(format_0g(r.amount, places=18), r.remaining_lock_text)
    out.print(refunds)


def register(app: typer.Typer) -> None:
    """Add the ledger commands to ``app``."""
    for name, fn in (
        ("add-account", add_account),
        ("deposit", deposit),
        ("refund", refund),
        ("transfer-fund", transfer_fund),
        ("retrieve-fund", retrieve_fund),
        ("get-account", get_account),
        ("get-sub-account", get_sub_account),
    ):
        app.command(name)(handle_errors(fn))
