"""Assemble and run a gateway (``0g-broker provider serve``; start-up order of B1)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from broker._exceptions import ConfigError
from broker.chain.connection import connect
from broker.chain.contracts import InferenceServingContract
from broker.chain.keys import load_keystore, wallet_from_key
from broker.chain.sender import TransactionSender
from broker.config.local_network import resolve_endpoints
from broker.provider.accounts import AccountCache
from broker.provider.auth import Authenticator
from broker.provider.billing import FeeLedger
from broker.provider.db import open_database
from broker.provider.errors import ProviderConfigError
from broker.provider.gateway import Gateway
from broker.provider.limits import Limits
from broker.provider.revocations import RevocationWatcher
from broker.provider.settings import ProviderSettings
from broker.provider.settlement import SettlementScheduler, Settler
from broker.provider.signing import SignatureStore
from broker.provider.tee import load_tee_signer

__all__ = ["UVICORN_OPTIONS", "build_gateway", "load_provider_wallet", "resolve_chain", "serve"]

logger = logging.getLogger(__name__)


def load_provider_wallet(settings: ProviderSettings):
    """The provider wallet from ``private_key`` or ``keystore`` + ``keystore_password``.

    Raises:
        ProviderConfigError: neither is configured. KeyStoreError: bad key or password.
    """
    if settings.private_key is not None:
        return wallet_from_key(settings.private_key.get_secret_value())
    if settings.keystore is not None and settings.keystore_password is not None:
        return load_keystore(settings.keystore, settings.keystore_password.get_secret_value())
    raise ProviderConfigError(
        "no provider key: set ZG_PROVIDER_PRIVATE_KEY or "
        "ZG_PROVIDER_KEYSTORE and ZG_PROVIDER_KEYSTORE_PASSWORD"
    )


def resolve_chain(settings: ProviderSettings) -> tuple[str, str]:
    """``(rpc_url, inference_address)`` from the settings, the preset, or the devnet state file
    (:func:`broker.config.local_network.resolve_endpoints`, the resolver the user side uses too).

    Raises:
        ProviderConfigError: unknown network, no RPC URL or address, no devnet state.
    """
    rpc, addr = settings.rpc_url, settings.inference_address
    if rpc and addr:
        return rpc, addr
    try:
        ends = resolve_endpoints(
            settings.network, rpc_url=rpc, inference_address=addr, require_ledger=False
        )
    except ConfigError as exc:
        hint = (
            " or set ZG_PROVIDER_RPC_URL and ZG_PROVIDER_INFERENCE_ADDRESS"
            if settings.network == "devnet"
            else ""
        )
        raise ProviderConfigError(f"{exc}{hint}") from None
    return ends.rpc_url, ends.inference_address


def build_gateway(
    settings: ProviderSettings,
    *,
    signer: Any = None,
    on_sent: Callable[[Any], None] | None = None,
    with_scheduler: bool = True,
) -> Gateway:
    """Connect, open the database, derive the TEE signer, sync accounts, run one reconciliation.

    Args:
        settings: the gateway settings.
        signer: a TEE signer to use instead of :func:`~broker.provider.tee.load_tee_signer`.
        on_sent: settlement fault-injection hook (tests).
        with_scheduler: create (not start) the APScheduler jobs: settlement every
            ``settlement_interval`` s and the deletion of expired response signatures
            (:meth:`~broker.provider.signing.SignatureStore.prune`) every ``signature_ttl`` s.

    Returns:
        The :class:`Gateway` (start ``gateway.scheduler`` yourself, or use :func:`serve`; the app's
        lifespan runs ``gateway.revocations``).
    """
    rpc_url, inference_address = resolve_chain(settings)
    w3 = connect(rpc_url)
    wallet = load_provider_wallet(settings)
    sender = TransactionSender(w3, wallet)
    contract = InferenceServingContract(w3, inference_address, sender)
    signer = signer or load_tee_signer(settings)
    db = open_database(settings.database_url())
    accounts = AccountCache(
        contract,
        wallet.address,
        account_ttl=settings.account_cache_ttl,
        service_ttl=settings.service_cache_ttl,
        fallback_ttl=settings.account_fallback_ttl,
    )
    revocations = RevocationWatcher(
        w3,
        inference_address,
        accounts,  # before the sync: no gap
        interval=settings.revocation_poll_interval,
    )
    accounts.sync_all()
    settler = Settler(db, contract, accounts, signer, chain_id=sender.chain_id, on_sent=on_sent)
    settler.reconcile()
    gw = Gateway(
        settings=settings,
        provider=wallet.address,
        signer=signer,
        db=db,
        ledger=FeeLedger(db),
        signatures=SignatureStore(db, signer, settings.signature_ttl),
        accounts=accounts,
        auth=Authenticator(accounts, min_locked_balance=settings.min_locked_balance),
        limits=Limits(
            per_ip_rps=settings.per_ip_rps,
            per_ip_burst=settings.per_ip_burst,
            per_user_rpm=settings.per_user_rpm,
            per_user_burst=settings.per_user_burst,
            max_per_user_concurrent=settings.max_per_user_concurrent,
            max_global_concurrent=settings.max_global_concurrent,
            handler_ip_rps=settings.handler_ip_rps,
            handler_ip_burst=settings.handler_ip_burst,
            trusted_proxies=settings.trusted_proxies,
        ),
        settler=settler,
        revocations=revocations,
    )
    if with_scheduler:
        gw.scheduler = SettlementScheduler(settler, settings.settlement_interval)
        # retention (B7): a signature is served for signature_ttl seconds and deleted by the
        # next prune, so a row lives at most twice signature_ttl
        gw.scheduler.add_periodic("signature-prune", gw.signatures.prune, settings.signature_ttl)
    return gw


#: uvicorn options of the gateway: the client address for the per-IP limits comes from the
#: configured ``trusted_proxies`` (:func:`broker.provider.limits.client_ip`), so uvicorn must not
#: rewrite the peer from ``X-Forwarded-For`` itself (its default trusts any local client).
#: No ``server: uvicorn`` header either (nothing to fingerprint, one header less per answer).
UVICORN_OPTIONS: dict[str, object] = {"proxy_headers": False, "server_header": False}


def serve(settings: ProviderSettings) -> None:
    """Run the gateway with uvicorn on ``settings.host:settings.port`` until interrupted."""
    import uvicorn

    from broker.provider.app import create_app

    gw = build_gateway(settings)
    gw.scheduler.start()
    try:
        uvicorn.run(
            create_app(gw, freeze_heap=True),
            host=settings.host,
            port=settings.port,
            log_level="info",
            access_log=settings.access_log,
            **UVICORN_OPTIONS,
        )
    finally:
        gw.scheduler.shutdown()
        gw.db.dispose()
