"""Service registration (``provider-gateway.md`` B11) and the devnet owner's acknowledgement of the
TEE signer (B1, D10)."""

from __future__ import annotations

import json

from broker.chain.contracts import InferenceServingContract, Service
from broker.chain.errors import ContractRevertError
from broker.provider.settings import ProviderSettings

__all__ = [
    "acknowledge_tee_signer_by_owner",
    "additional_info",
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
