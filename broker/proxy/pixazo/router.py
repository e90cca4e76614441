"""FastAPI routes of the Pixazo-compatible endpoint (logic in :mod:`.serving`). Every route needs
``serve``'s API key when one is set, as ``Ocp-Apim-Subscription-Key`` (Pixazo's header) or
``Authorization: Bearer``."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from broker.asgi.keys import bearer_token, key_matches
from broker.proxy.context import ProxyContext
from broker.proxy.pixazo import serving
from broker.proxy.pixazo.errors import PixazoHTTPError

__all__ = ["pixazo_router", "require_subscription_key"]


def _ctx(request: Request) -> ProxyContext:
    return request.app.state.proxy


def require_subscription_key(request: Request) -> None:
    """When ``api_key`` is set, require it in ``Ocp-Apim-Subscription-Key`` or as a bearer token
    (:func:`broker.asgi.keys.key_matches`: constant time, the key's length not shown either).

    Raises:
        PixazoHTTPError: 401 ``Unauthorized``.
    """
    key = _ctx(request).settings.api_key
    if key is None:
        return
    given = request.headers.get("ocp-apim-subscription-key")
    if given is None:
        given = bearer_token(request.headers.get("authorization"))
    if not key_matches(given, key.get_secret_value()):
        raise PixazoHTTPError(401, "Access denied due to missing or invalid subscription key.")


pixazo_router = APIRouter(dependencies=[Depends(require_subscription_key)])


@pixazo_router.post("/z-image-turbo-834/v1/z-image-turbo-request", status_code=202)
async def turbo_request(request: Request) -> Response:
    """Queue a Z-Image Turbo generation (202 ``{request_id, status, polling_url}``)."""
    return await serving.submit(_ctx(request), request, "z-image-turbo-834")


@pixazo_router.post("/z-image-base/v1/z-image-base-request", status_code=202)
async def base_request(request: Request) -> Response:
    """Queue a Z-Image Base generation (202 ``{request_id, status, polling_url}``)."""
    return await serving.submit(_ctx(request), request, "z-image-base")


@pixazo_router.get("/v2/requests/status/{request_id}")
async def request_status(request_id: str, request: Request) -> Response:
    """The request's status (``QUEUED`` … ``COMPLETED`` with ``output.media_url``)."""
    return await serving.get_status(_ctx(request), request_id)


@pixazo_router.get("/v2/media/{name}")
async def media(name: str, request: Request) -> Response:
    """A generated image (this user's, until ``media_ttl`` expires)."""
    return await serving.get_media(_ctx(request), name)
