"""``0g-broker verify --provider ADDR [--output-dir DIR] [--json]``: full local verification of a
provider's TEE attestation (user-broker.md §9, done without the SDK's manual docker step); and
``0g-broker download-report --provider ADDR --output FILE`` (§11.3): the raw report, unverified.

Exit codes: 0 verified; 1 not verified or failed (or a :class:`BrokerError`); 2 usage error.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from broker.cli.context import address_param
from broker.cli.output import handle_errors, out, print_json

__all__ = ["print_report", "print_step", "register"]

_STYLE = {"passed": "green", "failed": "bold red", "skipped": "yellow"}
_STEP_STYLE = {"step": "bold", "success": "green", "error": "red", "warning": "yellow"}


def print_report(report: Any) -> None:
    """Render a :class:`~broker.attestation.VerificationReport` as rich tables on stdout."""
    for label, rep in [
        ("", report),
        *[(f"{k} report: ", v) for k, v in report.sub_reports.items()],
    ]:
        table = Table(title=f"{label}{rep.report_format} ({rep.tee})")
        table.add_column("Check")
        table.add_column("Status")
        table.add_column("Reason")
        for c in rep.checks:
            status = str(c.status)
            table.add_row(c.name, f"[{_STYLE[status]}]{status}[/]", c.reason)
        out.print(table)
        if rep.signer:
            out.print(f"TEE signer (from the quote): {rep.signer}")
        if rep.compose_hash:
            out.print(f"Compose hash: {rep.compose_hash}")
        for image in rep.images:
            out.print(f"Image: {image}")
        if rep.tcb_status:
            advisories = ", ".join(rep.advisory_ids) or "none"
            out.print(f"TCB status: {rep.tcb_status} (advisories: {advisories})")
    verdict = str(report.verdict)
    style = "bold green" if verdict == "verified" else "bold red"
    out.print(f"[{style}]Verdict: {verdict}[/]")
    for path in report.files:
        out.print(f"Saved: {path}")


def print_step(step: Any) -> None:
    """Print one :class:`~broker.attestation.report.VerificationStep` as it happens (the SDK's CLI
    prints each ``message``); ``step`` lines are bold, errors red, warnings yellow."""
    style = _STEP_STYLE.get(step.type)
    text = escape(step.message)
    out.print(f"[{style}]{text}[/]" if style else text, highlight=False)


def _default_get_broker(ctx: typer.Context) -> Any:
    from broker.cli.context import make_broker

    return make_broker(ctx)


def register(app: typer.Typer, get_broker: Callable[[typer.Context], Any] | None = None) -> None:
    """Add the ``verify`` command to ``app``.

    Args:
        app: the typer application.
        get_broker: ``ctx -> object`` giving the service lookup: a ``get_service(provider)``
            callable, or an object with ``get_service`` or ``.inference.get_service``. Default: the
            CLI's broker (:func:`broker.cli.context.make_broker`).
    """
    factory = get_broker or _default_get_broker

    def verify(
        ctx: typer.Context,
        provider: Annotated[
            str, typer.Option("--provider", callback=address_param, help="Provider address.")
        ],
        output_dir: Annotated[
            Path | None,
            typer.Option(
                "--output-dir", help="Save the raw report(s), quote(s) and result JSON here."
            ),
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
        collateral_file: Annotated[
            Path | None,
            typer.Option(
                "--collateral", help="Offline Intel collateral (dcap-qvl QuoteCollateralV3 JSON)."
            ),
        ] = None,
        pccs_url: Annotated[
            str | None,
            typer.Option(
                "--pccs-url", help="Fetch collateral from this PCCS/PCS (cached under $ZG_HOME)."
            ),
        ] = None,
        policy_file: Annotated[
            Path | None,
            typer.Option(
                "--policy",
                help="Attestation policy JSON (default $ZG_HOME/attestation/policy.json).",
            ),
        ] = None,
        now: Annotated[
            int | None,
            typer.Option("--now", help="Verification time, Unix seconds (default: now)."),
        ] = None,
    ) -> None:
        from broker.attestation import PccsCollateralFetcher, load_policy
        from broker.cli.context import options
        from broker.inference.verify import verify_service

        collateral: Any = None
        if collateral_file is not None:
            collateral = collateral_file
        elif pccs_url:
            collateral = PccsCollateralFetcher(pccs_url)
        json_out = as_json or options(ctx).json
        report = verify_service(
            factory(ctx),
            provider,
            output_dir,
            on_step=None if json_out else print_step,
            collateral=collateral,
            now=now,
            policy=load_policy(policy_file),
        )
        if json_out:
            print_json(report.to_dict())
        else:
            print_report(report)
        if not report.verified:
            raise typer.Exit(1)

    app.command(
        "verify",
        help="Verify a provider's TEE attestation locally (TDX quote, "
        "Intel chain, TCB, signer, event log, compose).",
    )(handle_errors(verify))

    def download_report(
        ctx: typer.Context,
        provider: Annotated[
            str, typer.Option("--provider", callback=address_param, help="Provider address.")
        ],
        output: Annotated[Path, typer.Option("--output", help="File to write the raw report to.")],
    ) -> None:
        from broker.attestation import fetch_quote_report
        from broker.inference.verify import service_lookup

        service = service_lookup(factory(ctx))(provider)
        fetched = fetch_quote_report(service.url)
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp = output.with_name(output.name + ".tmp")
        tmp.write_bytes(fetched.body)
        tmp.replace(output)
        out.print(
            f"Saved the attestation report of {provider} ({len(fetched.body)} bytes, "
            f"from {fetched.url}) to {output}",
            highlight=False,
        )

    app.command(
        "download-report",
        help="Download the provider's raw attestation report (GET {url}/v1/quote) to a file.",
    )(handle_errors(download_report))
