"""Reusable pure-ASGI building blocks shared by the local servers (``serve``, the worker, the
dashboard).

Modules: ``body`` (:func:`read_capped_body`: the request body with a size cap), ``headers``
(:func:`copy_headers`: an upstream answer's headers for the client), ``keys``
(:func:`key_matches`: a client-sent key checked in constant time), ``heap``
(:func:`freeze_startup_heap`: start-up objects out of the garbage collector's way), ``hot_routes``
(:class:`HotRoutes`: exact routes served without FastAPI's routing), ``guard``
(:class:`LocalGuard`: Host / Origin / ``Sec-Fetch-Site`` / Content-Type checks that keep a web page
from using a local server), ``settings`` (the `AllowedHosts` / `AllowedOrigins` settings field
types both servers use), ``errors``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from broker._lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover - names for type checkers; loaded on first use
    from broker.asgi.body import read_capped_body
    from broker.asgi.errors import GuardConfigError, RequestBodyTooLargeError
    from broker.asgi.guard import (
        JSON_TYPES,
        MULTIPART_TYPES,
        GuardRefusal,
        LocalGuard,
        bound_host_names,
        is_loopback_host,
        openai_error_body,
        split_list,
    )
    from broker.asgi.headers import copy_headers
    from broker.asgi.heap import freeze_startup_heap
    from broker.asgi.hot_routes import HotRoutes
    from broker.asgi.keys import bearer_token, key_matches

__all__ = [
    "JSON_TYPES",
    "MULTIPART_TYPES",
    "GuardConfigError",
    "GuardRefusal",
    "HotRoutes",
    "LocalGuard",
    "RequestBodyTooLargeError",
    "bearer_token",
    "bound_host_names",
    "copy_headers",
    "freeze_startup_heap",
    "is_loopback_host",
    "key_matches",
    "openai_error_body",
    "read_capped_body",
    "split_list",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "GuardConfigError": "errors",
        "RequestBodyTooLargeError": "errors",
        "read_capped_body": "body",
        "copy_headers": "headers",
        "freeze_startup_heap": "heap",
        "HotRoutes": "hot_routes",
        "bearer_token": "keys",
        "key_matches": "keys",
        "JSON_TYPES": "guard",
        "MULTIPART_TYPES": "guard",
        "GuardRefusal": "guard",
        "LocalGuard": "guard",
        "bound_host_names": "guard",
        "is_loopback_host": "guard",
        "openai_error_body": "guard",
        "split_list": "guard",
    },
)
