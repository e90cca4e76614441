"""Which of ``serve``'s routes the provider's service type serves, and which ``model`` it accepts.

A gateway serves exactly one ``service.type`` (``provider-gateway.md`` B5: ``chatbot``,
``text-to-image``, ``image-editing``, ``speech-to-text``); a request on a route of another type is
refused here, before anything is signed, sent or billed, with OpenAI's answer to a model used on the
wrong endpoint: 404 ``invalid_request_error``, code ``unsupported_route``, naming the service type
and the provider.

The ``model`` of a request must be the service's on-chain model, compared exactly (the gateway's
rule, B5: ``model not supported: requested 'X', only 'Y' is available``); ``model`` may be omitted
(the on-chain model is inserted). A multi-model provider (``additionalInfo.MultiModel``,
``user-broker.md`` §5.7) checks the ids itself, so any id is forwarded to it. A refused model is
OpenAI's 404 ``model_not_found``; nothing is billed.

``ServeSettings.extra_routes`` (``ZG_SERVE_EXTRA_ROUTES``) forwards routes outside the service type
as they are (for gateways that also front another backend, as the devnet stack's
``chat_backend_url`` does); the model check then applies to the service type's own routes only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from broker.proxy.errors import ProxyHTTPError

if TYPE_CHECKING:
    from broker.proxy.context import ProxyContext

__all__ = [
    "ROUTES_BY_SERVICE_TYPE",
    "RouteKind",
    "check_model",
    "check_route",
    "serves_route",
]

#: A family of ``serve`` routes that one service type serves.
RouteKind = Literal["chat", "images", "image-edits", "audio"]

#: Service type -> the route families it serves (B5; the image jobs are ``images``).
ROUTES_BY_SERVICE_TYPE: dict[str, frozenset[str]] = {
    "chatbot": frozenset({"chat"}),
    "text-to-image": frozenset({"images"}),
    "image-editing": frozenset({"image-edits"}),
    "speech-to-text": frozenset({"audio"}),
}

_ROUTE_NAMES = {
    "chat": "/v1/chat/completions",
    "images": "/v1/images/generations",
    "image-edits": "/v1/images/edits",
    "audio": "/v1/audio/transcriptions",
}


def serves_route(service_type: str, kind: RouteKind) -> bool:
    """Whether a provider of ``service_type`` serves the route family ``kind``."""
    return kind in ROUTES_BY_SERVICE_TYPE.get(service_type, frozenset())


def check_route(ctx: ProxyContext, kind: RouteKind) -> None:
    """Refuse a route the provider's service type does not serve (unless ``extra_routes``).

    Args:
        ctx: the proxy context (``service.service_type``, ``provider``).
        kind: the route family of the request.

    Raises:
        ProxyHTTPError: 404 ``invalid_request_error`` / ``unsupported_route``.
    """
    stype = ctx.service.service_type
    if serves_route(stype, kind) or ctx.settings.extra_routes:
        return
    served = sorted(_ROUTE_NAMES[k] for k in ROUTES_BY_SERVICE_TYPE.get(stype, ()))
    hint = f"; it serves {', '.join(served)}" if served else ""
    raise ProxyHTTPError(
        f"{_ROUTE_NAMES[kind]} is not served by provider {ctx.provider}: its service type is "
        f"'{stype}'{hint}",
        status_code=404,
        type="invalid_request_error",
        code="unsupported_route",
    )


def check_model(ctx: ProxyContext, kind: RouteKind, model: object) -> None:
    """Refuse a ``model`` the provider does not serve (OpenAI's ``model_not_found``).

    Args:
        ctx: the proxy context. kind: the route family (routes outside the service type, forwarded
            by ``extra_routes``, are not checked). model: the request's ``model`` (``None`` or
            empty: omitted, fine).

    Raises:
        ProxyHTTPError: 404 ``invalid_request_error`` / ``model_not_found`` (``param`` ``model``);
            400 ``invalid_model`` when ``model`` is not a string.
    """
    if model is None or model == "":
        return
    if not isinstance(model, str):
        raise ProxyHTTPError(
            "model must be a string",
            status_code=400,
            type="invalid_request_error",
            code="invalid_model",
            param="model",
        )
    service = ctx.service
    if model == service.model:  # the common case, decided before the service info is parsed
        return
    if not serves_route(service.service_type, kind) or service.multi_model:
        return
    shown = model if len(model) <= 100 else model[:100] + "..."
    shown = shown.encode("utf-8", "replace").decode("utf-8")
    raise ProxyHTTPError(
        f"The model `{shown}` does not exist or you do not have access to it: provider "
        f"{ctx.provider} serves only `{service.model}`",
        status_code=404,
        type="invalid_request_error",
        code="model_not_found",
        param="model",
    )
