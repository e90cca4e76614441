"""Image ``url`` answers on ``serve``: links the client can open, at ``/v1/files/<id>.<ext>``.

The gateway answers ``response_format: "url"`` with its own links
(``{provider url}/v1/proxy/files/<id>``, :mod:`broker.provider.files`), which only this user's
session can open. After the answer's signature was verified on the bytes received (nothing is
rewritten before that), each such link is fetched once with the user's session, the image is kept
in serve's media store (the one behind the Pixazo endpoint's ``media_url``,
:class:`~broker.proxy.state_store.ServeStateStore`, for ``media_ttl`` seconds), and the link is
replaced with ``{serve base}/v1/files/<id>.<ext>``. That route sits behind serve's API key (when
set), like the request that made the image; an unknown or expired id is a 404.

Links that do not point at the provider's file route (e.g. a worker with its own public URL) are
left as they are.

The image is fetched after the answer was verified and is not covered by its signature, and serve
serves it from its own origin: a provider could make it an ``image/svg+xml`` (or HTML) with a script
that would run as one of serve's own pages when the user opens the link, free to spend through
serve. Only raster images (:data:`RASTER_TYPES`) are kept (another type leaves the provider's link
as it was), and stored media is answered with :data:`MEDIA_HEADERS` (``nosniff``, a sandboxing
CSP), here and on the Pixazo endpoint's ``media_url``.
"""

from __future__ import annotations

import json
import logging
import secrets
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from broker.proxy.context import ProxyContext
from broker.proxy.errors import ProxyHTTPError
from broker.proxy.router_async import state_store
from broker.proxy.upstream import decode_body
from broker.wire.json_body import loads_json_or_none

__all__ = ["FILES_ROUTE", "MEDIA_HEADERS", "RASTER_TYPES", "get_file", "link_files"]

logger = logging.getLogger(__name__)

FILES_ROUTE = "/v1/files/"
"""Path prefix of serve's file route."""
_GATEWAY_FILES = "/v1/proxy/files/"
_EXT = {"image/png": "png", "image/jpeg": "jpeg", "image/webp": "webp"}
#: The image types serve stores and serves (no script can run in them).
RASTER_TYPES = frozenset(_EXT)
#: Headers of every stored image serve answers: never sniffed as another type, and a CSP that
#: sandboxes the document and loads nothing, should it be opened as a page.
MEDIA_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
}


def _items(doc: Any) -> list[dict[str, Any]]:
    if not isinstance(doc, dict):
        return []
    out: list[dict[str, Any]] = []
    for holder in (doc, doc.get("data"), doc.get("result")):
        if isinstance(holder, dict) and isinstance(holder.get("data"), list):
            out.extend(item for item in holder["data"] if isinstance(item, dict))
    return out


async def _fetch(ctx: ProxyContext, link_id: str) -> tuple[bytes, str] | None:
    """The image behind the gateway's link, fetched with the user's session, or ``None``."""
    try:
        response = await ctx.upstream.send(
            "GET", f"/files/{link_id}", family="images", route="files"
        )
        received = await ctx.upstream.read_raw(response)
    except ProxyHTTPError as exc:
        logger.warning("could not fetch image %s from the provider: %s", link_id, exc)
        return None
    media_type = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if response.status_code != 200 or media_type not in RASTER_TYPES:
        logger.warning(
            "the provider answered HTTP %s (%s) for image %s",
            response.status_code,
            media_type or "no type",
            link_id,
        )
        return None
    return decode_body(received, response.headers), media_type


async def link_files(ctx: ProxyContext, request: Request, response: Response) -> Response:
    """Replace the provider's image links in a verified answer with serve's own.

    Args:
        ctx: the proxy context; request: the client's request (its base URL makes the links).
        response: the answer built from the provider's verified bytes (JSON).
    Returns:
        ``response`` unchanged when it holds no provider file link, else a copy (same status and
        headers) whose ``data[].url`` (or job ``result.data[].url``) are serve's
        ``/v1/files/<id>.<ext>``. A link whose image cannot be fetched, or is not a raster image
        (:data:`RASTER_TYPES`), is left as it was (and logged).
    """
    body = bytes(response.body)
    prefix = ctx.upstream.base_url.rstrip("/") + _GATEWAY_FILES
    if response.status_code != 200 or prefix.encode() not in body:
        return response
    doc = loads_json_or_none(body)
    if doc is None:
        return response
    base = str(request.base_url).rstrip("/")
    store = state_store(ctx)
    request_id = response.headers.get("zg-res-key") or ""
    changed = False
    for item in _items(doc):
        url = item.get("url")
        if not isinstance(url, str) or not url.startswith(prefix):
            continue
        fetched = await _fetch(ctx, url[len(prefix) :])
        if fetched is None:
            continue
        data, media_type = fetched
        media_id = secrets.token_urlsafe(16)
        await run_in_threadpool(
            store.put_media,
            ctx.inference.address,
            request_id[:120],
            media_id,
            media_type,
            data,
            ctx.settings.media_ttl,
        )
        item["url"] = f"{base}{FILES_ROUTE}{media_id}.{_EXT.get(media_type, 'bin')}"
        changed = True
    if not changed:
        return response
    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    return Response(
        json.dumps(doc, separators=(",", ":")).encode(),
        status_code=response.status_code,
        headers=headers,
    )


async def get_file(ctx: ProxyContext, name: str) -> Response:
    """``GET /v1/files/<id>.<ext>``: an image this user's answer linked to (404 once expired).

    Raises:
        ProxyHTTPError: 404 ``file_not_found`` for an unknown or expired id.
    """
    media_id = name.rsplit(".", 1)[0]
    item = None
    if 0 < len(media_id) <= 64:
        item = await run_in_threadpool(state_store(ctx).get_media, ctx.inference.address, media_id)
    if item is None:
        raise ProxyHTTPError(
            "file not found (unknown or expired)",
            status_code=404,
            type="invalid_request_error",
            code="file_not_found",
        )
    return Response(
        item.data,
        media_type=item.content_type,
        headers={"Cache-Control": "private, no-store", **MEDIA_HEADERS},
    )
