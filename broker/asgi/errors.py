"""Errors of :mod:`broker.asgi`.

Tree (all derive from :class:`broker._exceptions.BrokerError`)::

    GuardConfigError (ConfigError, ValueError)   a malformed allowed host or origin
"""

from __future__ import annotations

from broker._exceptions import ConfigError

__all__ = ["GuardConfigError"]


class GuardConfigError(ConfigError, ValueError):
    """An ``allowed_hosts`` / ``allowed_origins`` entry is malformed (also a ``ValueError`` so that
    pydantic settings validators report it on the field)."""
