"""Global CLI options and building a broker from them."""

from __future__ import annotations

from dataclasses import dataclass

import typer

from broker._exceptions import InputError
from broker.broker import Broker, create_broker, devnet_fallback_key, resolve_network
from broker.chain.keys import key_source
from broker.cli.output import message
from broker.config.settings import Settings, load_settings

__all__ = ["CliOptions", "address_param", "amount_param", "make_broker", "options"]


@dataclass
class CliOptions:
    """Options given before the command (``0g-broker --network devnet get-account``)."""

    network: str | None = None
    rpc: str | None = None
    ledger_ca: str | None = None
    inference_ca: str | None = None
    json: bool = False
    gas_price: int | None = None
    max_gas_price: int | None = None

    def settings(self) -> Settings:
        return load_settings()

    def network_name(self) -> str:
        return self.network or self.settings().network


def options(ctx: typer.Context) -> CliOptions:
    """The :class:`CliOptions` of this invocation (defaults when the callback did not run)."""
    root = ctx.find_root()
    if not isinstance(root.obj, CliOptions):
        root.obj = CliOptions()
    return root.obj


def make_broker(ctx: typer.Context) -> Broker:
    """Create the broker for a command from the global options.

    On ``devnet`` with no key configured (no ``ZG_PRIVATE_KEY``, no keystore) the devnet's first
    dev account (a public anvil key) is used and a notice goes to stderr.

    Raises:
        BrokerError subclasses from :func:`broker.broker.create_broker`.
    """
    opts = options(ctx)
    settings = opts.settings()
    network = opts.network or settings.network
    private_key = None
    if network.strip().lower() == "devnet" and key_source(None, settings=settings) is None:
        net = resolve_network(
            network,
            rpc_url=opts.rpc,
            ledger_address=opts.ledger_ca,
            inference_address=opts.inference_ca,
            settings=settings,
        )
        private_key = devnet_fallback_key(net, settings=settings)
        if private_key is not None:
            message(
                f"no key configured: using devnet dev account {net.dev_accounts[0].address} "
                "(public anvil key)",
                style="yellow",
            )
    return create_broker(
        private_key,
        network=network,
        rpc_url=opts.rpc,
        ledger_address=opts.ledger_ca,
        inference_address=opts.inference_ca,
        gas_price=opts.gas_price,
        max_gas_price=opts.max_gas_price,
        settings=settings,
    )


def address_param(value: str | list[str] | None) -> str | list[str] | None:
    """Option callback for addresses (``--provider``): a malformed one is a usage error (exit 2)
    before anything connects. Returns the value(s) checksummed; ``None`` passes through."""
    from broker.chain.addresses import checksum_address

    if value is None:
        return None
    try:
        if isinstance(value, list):
            return [checksum_address(v, field="provider") for v in value]
        return checksum_address(value, field="provider")
    except InputError as exc:
        raise typer.BadParameter(str(exc)) from None


def amount_param(value: str | None) -> str | None:
    """Option callback for 0G amounts (``--amount``): checked exactly with
    :func:`broker.units.parse_0g`; a malformed one is a usage error (exit 2). Returns the text."""
    from broker.units import parse_0g

    if value is None:
        return None
    try:
        parse_0g(value)
    except InputError as exc:
        raise typer.BadParameter(str(exc)) from None
    return value
