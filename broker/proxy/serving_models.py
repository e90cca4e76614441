"""``GET /v1/models``: the provider's model list (``{url}/v1/models``, [0.9]) in OpenAI's shape;
when the provider has no such route, a one-model list with its on-chain default model."""

from __future__ import annotations

import json
import time

from fastapi.responses import JSONResponse

from broker.proxy.context import ProxyContext
from broker.proxy.errors import ProxyHTTPError

__all__ = ["list_models"]


async def list_models(ctx: ProxyContext) -> JSONResponse:
    """``{"object": "list", "data": [{"id", "object": "model", "created", "owned_by", ...}]}``.

    Raises:
        ProxyHTTPError: 502 when the provider answers something other than a model list.
    """
    response = await ctx.upstream.send(
        "GET", "/v1/models", proxy=False, authenticated=False, route="models"
    )
    raw = await ctx.upstream.read(response)
    if response.status_code == 404:
        data = [{"id": ctx.default_model}]
    else:
        if response.status_code >= 400:
            from broker.proxy.upstream import error_from_upstream

            raise error_from_upstream(response.status_code, raw, response.headers)
        try:
            body = json.loads(raw)
            data = body["data"]
            if body.get("object") != "list" or not isinstance(data, list):
                raise ValueError
        except (ValueError, KeyError, TypeError, RecursionError):
            raise ProxyHTTPError(
                "the provider's /v1/models is not a model list",
                status_code=502,
                type="upstream_error",
                code="bad_models",
            ) from None
    cards = []
    for card in data:
        if isinstance(card, dict) and isinstance(card.get("id"), str):
            cards.append(
                {"object": "model", "created": int(time.time()), "owned_by": ctx.provider, **card}
            )
    return JSONResponse({"object": "list", "data": cards})
