"""The start-up steps of ``0g-broker serve`` ("At start" of issue 5; ``user-broker.md`` §10.1 with
§13 item 15 fixed: no billed health-check request, no racy port probe).

0. pre-flight (:func:`preflight`, no transaction): the port is free, the provider is registered, its
   service type is one serve handles and it names a model; a start that fails here spends nothing;
1. resolve the provider's service on chain (done by the pre-flight);
2. make sure the sub-account is funded (one check-and-fund cycle: created when missing, topped up to
   the provider's unsettled fee + ``buffer × 1 0G``);
3. make sure this user acknowledged the provider's TEE signer (one transaction when needed);
4. start auto-funding in the background.

Progress goes to stderr (rich); nothing here is billed by the provider.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.text import Text

from broker._exceptions import BrokerError
from broker.inference.errors import UnknownProviderError
from broker.ledger.errors import NoLedgerError
from broker.ports import port_available
from broker.proxy.errors import ProxyConfigError, ProxyStartupError
from broker.units import format_0g
from broker.wire.fees import SERVICE_TYPES

if TYPE_CHECKING:
    from broker.inference.broker import InferenceBroker
    from broker.inference.models import Service
    from broker.proxy.settings import ServeSettings

__all__ = ["StartupReport", "check_port", "preflight", "prepare_provider"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StartupReport:
    """What start-up found and did.

    Attributes:
        provider: checksummed provider address. service: its on-chain service.
        acknowledged_now: an ``acknowledgeTEESigner`` transaction was sent.
        locked_balance: neuron locked in the sub-account after funding (``None`` if unknown).
        transferred: neuron moved from the ledger by the start-up funding check.
        auto_funding: background auto-funding was started.
    """

    provider: str
    service: Service
    acknowledged_now: bool
    locked_balance: int | None
    transferred: int
    auto_funding: bool


def _ok(console: Console, text: str) -> None:
    console.print(Text("✓ ", style="green") + Text(text))


def _warn(console: Console, text: str) -> None:
    console.print(Text("! ", style="yellow") + Text(text, style="yellow"))


def check_port(host: str, port: int) -> None:
    """Refuse a ``host:port`` that serve could not bind (the way uvicorn binds: ``SO_REUSEADDR``).

    Raises:
        ProxyConfigError: something already listens there.
    """
    if not port_available(host, port):
        raise ProxyConfigError(
            f"port {port} on {host} is already in use; choose another with --port",
            hint=f"0g-broker serve --port {port + 1 if 0 < port < 65535 else 3001} ...",
        )


def preflight(
    inference: InferenceBroker,
    provider: str,
    settings: ServeSettings | None = None,
) -> Service:
    """Everything serve can check before it spends (reads only, no transaction).

    Checks that ``settings.host:settings.port`` is free (when ``settings`` is given), that a service
    is registered at ``provider`` (``getService``), that its service type is one serve handles
    (:data:`broker.wire.fees.SERVICE_TYPES`), that it names a model, and that the user has a
    ledger to fund the sub-account from (``getLedger``).

    Args:
        inference: the user's inference broker.
        provider: provider address.
        settings: serve settings (host and port checked) or ``None``.

    Returns:
        The provider's :class:`~broker.inference.models.Service` (fresh from the chain).

    Raises:
        ProxyConfigError: the port is taken. ProxyStartupError: no service at ``provider``, an
            unsupported service type, no model, or no ledger. InvalidAddressError: malformed
            address.
    """
    if settings is not None:
        check_port(settings.host, settings.port)
    try:
        service = inference.get_service(provider, refresh=True)
    except UnknownProviderError as exc:
        raise ProxyStartupError(
            f"{exc}; nothing was spent",
            hint="0g-broker list-providers shows the registered providers",
        ) from None
    if service.service_type not in SERVICE_TYPES:
        raise ProxyStartupError(
            f"provider {service.provider} serves {service.service_type!r}, which serve does not "
            f"handle (it handles {', '.join(SERVICE_TYPES)}); nothing was spent"
        )
    if not (service.model or "").strip():
        raise ProxyStartupError(
            f"provider {service.provider} registers no model for its service; nothing was spent"
        )
    ledger = getattr(inference, "ledger", None)
    if ledger is not None and hasattr(ledger, "get_ledger"):
        try:
            ledger.get_ledger()  # funding the sub-account needs a ledger to draw from
        except NoLedgerError as exc:
            raise ProxyStartupError(f"{exc}; nothing was spent", hint=exc.hint) from None
    return service


def prepare_provider(
    inference: InferenceBroker,
    provider: str,
    settings: ServeSettings,
    *,
    console: Console | None = None,
) -> StartupReport:
    """Run the start-up steps for ``provider`` (blocking; chain reads and up to two transactions).

    Args:
        inference: the user's inference broker.
        provider: provider address.
        settings: serve settings (``ensure_acknowledged``, ``auto_funding``, funding interval in
            seconds and buffer multiplier).
        console: where progress goes (default: a stderr console).

    Returns:
        :class:`StartupReport`.

    Raises:
        ProxyStartupError: the pre-flight failed (:func:`preflight`: no service for ``provider``,
            unsupported service type, no model), the sub-account could not be funded (e.g. no
            ledger or not enough in it; the message says how to deposit), or the acknowledgement
            failed.
    """
    console = console or Console(stderr=True)
    with console.status("resolving the provider's service on chain…"):
        service = preflight(inference, provider)
    provider = service.provider
    _ok(console, f"provider {provider}: {service.service_type} '{service.model}' at {service.url}")
    if not service.tee_signer_acknowledged:
        _warn(
            console,
            "the contract owner has not acknowledged this provider's TEE signer; the "
            "provider will refuse requests until it is",
        )

    transferred, locked = 0, None
    checker = getattr(inference, "funding_checker", None)
    with console.status("checking the sub-account's funds…"):
        if checker is not None:
            before = checker.status(provider)
            status = checker.check(provider, settings.funding_buffer_multiplier)
            if status.transfers > before.transfers:
                transferred = status.last_transfer_amount
            locked = status.locked_balance
            if locked is None:
                raise ProxyStartupError(
                    f"the sub-account for {provider} could not be funded"
                    f"{': ' + status.last_error if status.last_error else ''}. Create or top up "
                    "the ledger first: 0g-broker add-account --amount 3 (or deposit --amount N)"
                )
            if status.last_error:
                _warn(console, f"funding check: {status.last_error}")
    if locked is not None:
        moved = f" (transferred {format_0g(transferred)} 0G)" if transferred else ""
        _ok(console, f"sub-account funded: {format_0g(locked)} 0G locked{moved}")

    acknowledged_now = False
    if settings.ensure_acknowledged:
        with console.status("acknowledging the provider's signer…"):
            try:
                result = inference.acknowledge_provider_signer(provider)
            except BrokerError as exc:
                raise ProxyStartupError(
                    f"could not acknowledge provider {provider}: {exc}"
                ) from None
        acknowledged_now = not result.already_acknowledged
        _ok(
            console,
            "provider signer acknowledged" + (" (transaction sent)" if acknowledged_now else ""),
        )

    started = False
    if settings.auto_funding and hasattr(inference, "start_auto_funding"):
        status: Any = inference.start_auto_funding(
            provider, settings.funding_interval, settings.funding_buffer_multiplier
        )
        started = True
        if status.locked_balance is not None:
            locked = status.locked_balance
        _ok(
            console,
            f"auto-funding every {settings.funding_interval:g} s "
            f"(keeps unsettled fees + {settings.funding_buffer_multiplier} 0G)",
        )
    return StartupReport(provider, service, acknowledged_now, locked, transferred, started)
