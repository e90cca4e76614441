"""Inference commands of ``0g-compute-cli inference`` as top-level ``0g-broker`` commands
(user-broker.md §11.3): ``list-providers``, ``get-models``, ``acknowledge-provider``,
``get-secret``, ``revoke-token``, ``revoke-all-tokens``. ``get-sub-account`` lives in
:mod:`broker.cli.ledger` and ``verify`` in :mod:`broker.cli.verify`.

Data goes to stdout (tables, or JSON with ``--json``); messages to stderr. Prices are shown in 0G
(exact decimals); JSON carries neuron strings plus ``*_0g`` decimals.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from broker.cli.context import address_param, make_broker, options
from broker.cli.output import amount_fields, handle_errors, message, out, print_json
from broker.ledger.models import TxResult
from broker.units import format_0g

__all__ = ["CURL_PATHS", "register"]

ProviderOpt = Annotated[
    str, typer.Option("--provider", callback=address_param, help="Provider address.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]

#: the example request path per service type (as in ``get-secret`` of 0g-compute-cli).
CURL_PATHS = {
    "chatbot": "/v1/proxy/chat/completions",
    "text-to-image": "/v1/proxy/images/generations",
    "image-editing": "/v1/proxy/images/edits",
    "speech-to-text": "/v1/proxy/audio/transcriptions",
}
_IMAGE_TYPES = ("text-to-image", "image-editing")


def _json(ctx: typer.Context, as_json: bool) -> bool:
    return options(ctx).json or as_json


def _tx(
    ctx: typer.Context, as_json: bool, result: TxResult | None, text: str, **extra: Any
) -> None:
    if _json(ctx, as_json):
        tx = (
            None
            if result is None
            else {
                "tx_hash": result.tx_hash,
                "block_number": result.block_number,
                "gas_used": result.gas_used,
            }
        )
        print_json({"ok": True, "message": text, "transaction": tx, **extra})
        return
    message(text, style="green")
    if result is not None:
        out.print(result.tx_hash)


def _service_json(s: Any) -> dict[str, Any]:
    return {
        "provider": s.provider, "service_type": s.service_type, "url": s.url, "model": s.model,
        **amount_fields("input_price", s.input_price),
        **amount_fields("output_price", s.output_price),
        "verifiability": s.verifiability, "tee_signer_address": s.tee_signer_address,
        "tee_signer_acknowledged": s.tee_signer_acknowledged, "multi_model": s.multi_model,
        "price_denomination": s.price_denomination, "updated_at": s.updated_at,
    }  # fmt: skip


def list_providers(
    ctx: typer.Context,
    include_invalid: Annotated[
        bool,
        typer.Option(
            "--include-invalid",
            help="Also list services whose TEE signer the owner has not acknowledged.",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """List the registered inference services (all pages)."""
    services = make_broker(ctx).inference.list_service(include_unacknowledged=include_invalid)
    if _json(ctx, as_json):
        print_json([_service_json(s) for s in services])
        return
    if not services:
        message("no providers found", style="yellow")
        return
    for i, s in enumerate(services, 1):
        table = Table(show_header=False, title=f"Provider {i}", title_justify="left")
        table.add_column("Field", ratio=40)
        table.add_column("Value", ratio=60, overflow="fold")
        table.add_row("Provider", s.provider)
        table.add_row("Service Type", s.service_type)
        if s.multi_model:
            table.add_row(
                "Model", f"multi-model ({s.price_denomination or 'NATIVE'}); default {s.model}"
            )
        else:
            table.add_row("Model", s.model)
        if s.service_type in _IMAGE_TYPES:
            table.add_row("Price Per Image (0G)", format_0g(s.output_price))
        elif s.service_type == "speech-to-text":
            table.add_row("Price Per Second (0G)", format_0g(s.input_price))
        else:
            table.add_row("Input Price Per Token (0G)", format_0g(s.input_price))
            table.add_row("Output Price Per Token (0G)", format_0g(s.output_price))
        table.add_row("Verifiability", s.verifiability or "-")
        table.add_row("TEE Signer Acknowledged", "yes" if s.tee_signer_acknowledged else "no")
        table.add_row("URL", s.url)
        out.print(table)
        if s.multi_model:
            out.print(f"Run: 0g-broker get-models --provider {s.provider}")


def get_models(ctx: typer.Context, provider: ProviderOpt, as_json: JsonOpt = False) -> None:
    """Show a provider's model catalogue (GET {url}/v1/models) [0.9]."""
    models = make_broker(ctx).inference.get_provider_models(provider)
    if _json(ctx, as_json):
        print_json(models.model_dump(mode="json"))
        return
    out.print(f"Provider: {models.provider}")
    out.print(f"Multi-model: {'yes' if models.multi_model else 'no'}")
    out.print(f"Price denomination: {models.price_denomination or 'NATIVE'}")
    out.print(f"Default model: {models.default_model}")
    table = Table()
    for col in ("Model", "Type", "Pricing"):
        table.add_column(col, overflow="fold")
    usd = models.price_denomination == "USD"
    for m in models.models:
        extra = m.model_extra or {}
        pricing = (m.pricing_usd if usd else m.pricing) or {}
        unit = "USD" if usd else "0G"
        text = ", ".join(
            f"{k}: {v} {unit}" for k, v in pricing.items() if not isinstance(v, (dict, list))
        )
        table.add_row(m.id, str(extra.get("type", extra.get("service_type", "-"))), text or "-")
    out.print(table)


def acknowledge_provider(
    ctx: typer.Context, provider: ProviderOpt, as_json: JsonOpt = False
) -> None:
    """Acknowledge the provider's TEE signer (creates the sub-account with 1 0G if missing)."""
    result = make_broker(ctx).inference.acknowledge_provider_signer(provider)
    if result.sub_account_created:
        message(f"created the sub-account with {format_0g(result.transferred)} 0G", style="yellow")
    text = (
        "Provider already acknowledged" if result.already_acknowledged else "Provider acknowledged"
    )
    _tx(
        ctx,
        as_json,
        result.tx,
        text,
        provider=result.provider,
        sub_account_created=result.sub_account_created,
        already_acknowledged=result.already_acknowledged,
    )


def _format_ms(ms: int) -> str:
    if not ms:
        return "never"
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def get_secret(
    ctx: typer.Context,
    provider: ProviderOpt,
    token_id: Annotated[
        int | None,
        typer.Option(
            "--token-id", min=0, max=254, help="Token id 0-254 (default: the lowest free one)."
        ),
    ] = None,
    duration: Annotated[
        int, typer.Option("--duration", min=0, help="Lifetime in milliseconds; 0 = never expires.")
    ] = 0,
    as_json: JsonOpt = False,
) -> None:
    """Create a persistent, revocable API key (app-sk-...) for a provider. The key is a secret:
    it is printed once on stdout."""
    inf = make_broker(ctx).inference
    inf.get_account(provider)  # requires the sub-account, like the SDK (clear error otherwise)
    key = inf.get_secret(provider, token_id=token_id, duration=duration or None)
    service = inf.get_service(provider)
    if _json(ctx, as_json):
        print_json(
            {
                "provider": service.provider,
                "token_id": key.token_id,
                "created_at": key.created_at,
                "expires_at": key.expires_at,
                "authorization": f"Bearer {key.raw_token}",
                "api_key": key.raw_token,
            }
        )
        return
    out.print(f"Authorization: Bearer {key.raw_token}", soft_wrap=True)
    out.print(f"Token ID: {key.token_id}")
    out.print(f"Expires: {_format_ms(key.expires_at)}")
    path = CURL_PATHS.get(service.service_type, CURL_PATHS["chatbot"])
    out.print("Example:", highlight=False)
    out.print(
        f"  curl {service.url}{path} -H 'Content-Type: application/json' "
        f"-H 'Authorization: Bearer <API key>' -d '{{\"model\": \"{service.model}\", ...}}'",
        highlight=False,
        markup=False,
    )
    out.print(
        f"Revoke this key: 0g-broker revoke-token --provider {service.provider} "
        f"--token-id {key.token_id}",
        highlight=False,
    )
    out.print(
        f"Revoke all keys: 0g-broker revoke-all-tokens --provider {service.provider}",
        highlight=False,
    )


def revoke_token(
    ctx: typer.Context,
    provider: ProviderOpt,
    token_id: Annotated[int, typer.Option("--token-id", min=0, max=254, help="Token id 0-254.")],
    as_json: JsonOpt = False,
) -> None:
    """Revoke one API key on-chain (revokeToken)."""
    result = make_broker(ctx).inference.revoke_token(provider, token_id)
    _tx(ctx, as_json, result, f"Token {token_id} revoked", token_id=token_id)


def revoke_all_tokens(ctx: typer.Context, provider: ProviderOpt, as_json: JsonOpt = False) -> None:
    """Revoke every API key and session token for a provider (revokeAllTokens: bumps the
    generation)."""
    result = make_broker(ctx).inference.revoke_all_tokens(provider)
    _tx(ctx, as_json, result, "All tokens revoked")


def register(app: typer.Typer) -> None:
    """Add the inference commands to ``app``."""
    for name, fn in (
        ("list-providers", list_providers),
        ("get-models", get_models),
        ("acknowledge-provider", acknowledge_provider),
        ("get-secret", get_secret),
        ("revoke-token", revoke_token),
        ("revoke-all-tokens", revoke_all_tokens),
    ):
        app.command(name)(handle_errors(fn))
