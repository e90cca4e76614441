"""Errors of :mod:`broker.asgi`.

Tree (all derive from :class:`broker._exceptions.BrokerError`)::

    GuardConfigError (ConfigError, ValueError)   a malformed allowed host or origin
    RequestBodyTooLargeError (InputError)        a request body over the server's cap
"""

from __future__ import annotations

from broker._exceptions import ConfigError, InputError

__all__ = ["GuardConfigError", "RequestBodyTooLargeError"]


class GuardConfigError(ConfigError, ValueError):
    """An ``allowed_hosts`` / ``allowed_origins`` entry is malformed (also a ``ValueError`` so that
    pydantic settings validators report it on the field)."""


class RequestBodyTooLargeError(InputError):
    """A request body is larger than the server accepts (:func:`broker.asgi.body.read_capped_body`).
    Each server maps it to its own 413 answer.

    Attributes:
        cap: the largest body accepted, in bytes.
    """

    def __init__(self, cap: int) -> None:
        super().__init__(f"request body larger than {cap} bytes")
        self.cap = cap
