"""``0g-broker inference ...`` (hidden alias ``inf``): the inference commands again as one group, as
``0g-compute-cli`` names them (``0g-compute-cli inference list-providers``); the same commands stay
at the top level (``broker.cli.inference``, ``broker.cli.verify``, ``broker.cli.serve``).

Mounted by ``broker.cli.main`` through ``AREA_MODULES`` like every other area.
"""

from __future__ import annotations

import typer

from broker.cli import inference, serve, verify

__all__ = ["ALIASES", "app"]

#: Other names the group is mounted under, hidden from ``--help``.
ALIASES: tuple[str, ...] = ("inf",)

app = typer.Typer(
    no_args_is_help=True,
    help="Inference commands, as in `0g-compute-cli inference ...` (the same commands are also "
    "available at the top level).",
)
inference.register(app)
verify.register(app)
app.command("serve")(serve.serve_cmd)
