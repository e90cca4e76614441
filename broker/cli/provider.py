"""``0g-broker provider``: run and register the provider gateway (mounted by
``broker.cli.main``)."""

from __future__ import annotations

from typing import Annotated

import typer

from broker.cli.output import err, handle_errors

__all__ = ["app"]

app = typer.Typer(
    help="Provider gateway (settlement agent): serve and register.", no_args_is_help=True
)


@app.command()
@handle_errors
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 3080).")] = None,
) -> None:
    """Run the gateway (settings from ZG_PROVIDER_* variables)."""
    from broker.provider.serve import serve as run
    from broker.provider.settings import ProviderSettings

    overrides = {k: v for k, v in {"host": host, "port": port}.items() if v is not None}
    run(ProviderSettings(**overrides))


@app.command()
@handle_errors
def register(
    acknowledge_as_owner: Annotated[
        bool,
        typer.Option(
            help="Devnet: also send acknowledgeTEESignerByOwner with the devnet owner key."
        ),
    ] = False,
) -> None:
    """Stake and register/update the service (addOrUpdateService with additionalInfo)."""
    from eth_account import Account

    from broker.chain.connection import connect
    from broker.chain.contracts import InferenceServingContract
    from broker.chain.sender import TransactionSender
    from broker.devnet.state import read_state
    from broker.provider.register import register_and_acknowledge
    from broker.provider.serve import load_provider_wallet, resolve_chain
    from broker.provider.settings import ProviderSettings
    from broker.provider.tee import load_tee_signer

    settings = ProviderSettings()
    rpc_url, address = resolve_chain(settings)
    w3 = connect(rpc_url)
    wallet = load_provider_wallet(settings)
    contract = InferenceServingContract(w3, address, TransactionSender(w3, wallet))
    signer = load_tee_signer(settings)
    owner = Account.from_key(read_state().owner_key()) if acknowledge_as_owner else None
    done = register_and_acknowledge(contract, settings, signer.address, owner=owner)
    err.print(
        f"service {done.outcome}: provider {wallet.address}, TEE signer {signer.address}",
        highlight=False,
    )
    if not acknowledge_as_owner:
        return
    if done.service is None:
        err.print("no service registered (empty serving URL): nothing to acknowledge")
    elif done.acknowledged_by_owner:
        err.print("TEE signer acknowledged by the contract owner")
    else:
        err.print("TEE signer already acknowledged")
