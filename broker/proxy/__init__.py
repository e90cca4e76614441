"""``0g-broker serve``: the OpenAI-compatible local proxy that pays, signs, verifies and bills every
request for the user (``user-broker.md`` §10 with §13 items 14–16 fixed).

Modules: ``settings`` (``ZG_SERVE_*``), ``protocol`` (HTTP models), ``upstream`` (pooled client,
headers, error mapping), ``verification`` (off / warn / enforce), ``billing`` (fees), ``metrics``
(Prometheus), ``serving_*`` (per route family), ``streaming`` (SSE relay), ``account``
(``/v1/account``), ``router``, ``app`` (``create_app``, ``serve``), ``startup``, ``demo`` (the
one-command demo), ``errors``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from broker._lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover - names for type checkers; loaded on first use
    from broker.proxy.app import create_app, serve
    from broker.proxy.errors import (
        ProxyConfigError,
        ProxyError,
        ProxyHTTPError,
        ProxyStartupError,
        UpstreamError,
        UpstreamTimeoutError,
        UpstreamUnavailableError,
        VerificationRefusedError,
    )
    from broker.proxy.settings import ServeSettings, VerifyMode

__all__ = [
    "ProxyConfigError",
    "ProxyError",
    "ProxyHTTPError",
    "ProxyStartupError",
    "ServeSettings",
    "UpstreamError",
    "UpstreamTimeoutError",
    "UpstreamUnavailableError",
    "VerificationRefusedError",
    "VerifyMode",
    "create_app",
    "serve",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "create_app": "app",
        "serve": "app",
        "ProxyConfigError": "errors",
        "ProxyError": "errors",
        "ProxyHTTPError": "errors",
        "ProxyStartupError": "errors",
        "UpstreamError": "errors",
        "UpstreamTimeoutError": "errors",
        "UpstreamUnavailableError": "errors",
        "VerificationRefusedError": "errors",
        "ServeSettings": "settings",
        "VerifyMode": "settings",
    },
)
