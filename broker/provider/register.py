"""Service registration (``provider-gateway.md`` B11) and the devnet owner's acknowledgement of the
TEE signer (B1, D10): the one home of these steps, used by ``0g-broker provider register`` and the
devnet's provider stack (:func:`register_and_acknowledge`)."""

from __future__ import annotations

import json
from dataclasses import dataclass

from eth_account.signers.local import LocalAccount

from broker.chain.contracts import InferenceServingContract, Service
from broker.chain.errors import ContractRevertError
from broker.chain.sender import TransactionSender
from broker.provider.settings import ProviderSettings

__all__ = [
    "Registration",
    "acknowledge_tee_signer_by_owner",
    "additional_info",
    "register_and_acknowledge",
    "register_service",
    "service_params",
]


def additional_info(settings: ProviderSettings) -> str:
    """The ``additionalInfo`` JSON: keys sorted, compact, like Go's ``json.Marshal`` of a map
    (B11)."""
    info = {
        "ImageDigest": settings.image_digest,
        "ImageName": settings.image_name,
        "TEEVerifier": settings.tee_verifier,
        "TargetSeparated": False,
        "TargetTeeAddress": "",
        "VerifierURL": settings.verifier_url,
    }
    return json.dumps(info, sort_keys=True, separators=(",", ":"))


def service_params(settings: ProviderSettings, tee_signer_address: str) -> tuple:
    """``ServiceParams`` in ABI order ``(serviceType, url, model, verifiability, inputPrice,
    outputPrice, additionalInfo, teeSignerAddress)`` (``contracts.md`` A3.2); prices in neuron."""
    return (
        settings.service_type,
        settings.serving_url,
        settings.model,
        settings.verifiability,
        settings.input_price,
        settings.output_price,
        additional_info(settings),
        tee_signer_address,
    )


def _same(svc: Service, params: tuple) -> bool:
    return (
        svc.service_type,
        svc.url,
        svc.model,
        svc.verifiability,
        svc.input_price,
        svc.output_price,
        svc.additional_info,
        svc.tee_signer_address.lower(),
    ) == (*params[:7], params[7].lower())


def register_service(
    contract: InferenceServingContract, settings: ProviderSettings, tee_signer_address: str
) -> str:
    """``SyncService`` (B11): register (with ``provider_stake`` neuron), update, or remove the
    service.

    An empty ``settings.serving_url`` means "no public service": a registered service is removed
    (``removeService()``, which returns the stake, ``contracts.md`` A3.3) and nothing is registered.

    Returns:
        ``"registered"``, ``"updated"``, ``"unchanged"``, ``"removed"`` (serving URL empty, service
        was registered) or ``"absent"`` (serving URL empty, nothing registered).

    Raises:
        ContractRevertError: e.g. ``InsufficientStake``; TransactionError / RPCError.
    """
    try:
        svc: Service | None = contract.get_service(contract.sender.address)
    except ContractRevertError as exc:
        if exc.error_name != "ServiceNotExist":
            raise
        svc = None
    if not settings.serving_url.strip():
        if svc is None:
            return "absent"
        contract.remove_service()
        return "removed"
    params = service_params(settings, tee_signer_address)
    if svc is not None and _same(svc, params):
        return "unchanged"
    # removeService returns the stake, so no service ⇔ no stake (contracts.md A3.3)
    stake = settings.provider_stake if svc is None else 0
    contract.add_or_update_service(params, value=stake)
    return "registered" if svc is None else "updated"


def acknowledge_tee_signer_by_owner(
    owner_contract: InferenceServingContract, provider: str
) -> None:
    """``acknowledgeTEESignerByOwner(provider)`` sent by the contract owner (devnet; D10)."""
    owner_contract.acknowledge_tee_signer_by_owner(provider)


@dataclass(frozen=True)
class Registration:
    """What :func:`register_and_acknowledge` did.

    Attributes:
        outcome: :func:`register_service`'s answer (``"registered"``, ``"updated"``,
            ``"unchanged"``, ``"removed"``, ``"absent"``).
        service: the on-chain service afterwards (``None`` when removed or absent).
        acknowledged_by_owner: whether this call sent ``acknowledgeTEESignerByOwner``.
    """

    outcome: str
    service: Service | None
    acknowledged_by_owner: bool


def register_and_acknowledge(
    contract: InferenceServingContract,
    settings: ProviderSettings,
    tee_signer_address: str,
    *,
    owner: LocalAccount | None = None,
) -> Registration:
    """Register the service (:func:`register_service`, B11), then, given the contract ``owner``
    (the devnet's deployer), have the owner acknowledge the TEE signer (D10) unless it already is.

    Args:
        contract: the InferenceServing wrapper sending from the provider wallet.
        settings: the gateway settings (service type, URL, model, prices in neuron, stake).
        tee_signer_address: the TEE signer's address (``ServiceParams.teeSignerAddress``).
        owner: the contract owner's account (devnet only); ``None``: no acknowledgement.

    Returns:
        :class:`Registration`.

    Raises:
        ContractRevertError: e.g. ``InsufficientStake``; TransactionError / RPCError.
    """
    outcome = register_service(contract, settings, tee_signer_address)
    if outcome in ("removed", "absent"):
        return Registration(outcome, None, acknowledged_by_owner=False)
    provider = contract.sender.address
    service = contract.get_service(provider)
    if owner is None or service.tee_signer_acknowledged:
        return Registration(outcome, service, acknowledged_by_owner=False)
    owner_contract = InferenceServingContract(
        contract.w3, contract.address, TransactionSender(contract.w3, owner)
    )
    acknowledge_tee_signer_by_owner(owner_contract, provider)
    return Registration(outcome, contract.get_service(provider), acknowledged_by_owner=True)
