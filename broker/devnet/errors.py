"""Errors of the embedded devnet (all subclasses of :class:`broker._exceptions.DevnetError`)."""

from __future__ import annotations

from broker._exceptions import DevnetError

__all__ = ["AnvilNotFoundError", "DevnetError", "DevnetNotRunningError", "PortInUseError"]


class AnvilNotFoundError(DevnetError):
    """No anvil binary was found (``ZG_ANVIL_BIN``, ``tools/node_modules`` or ``PATH``)."""


class PortInUseError(DevnetError):
    """The requested 127.0.0.1 port is already taken by another process."""


class DevnetNotRunningError(DevnetError):
    """No devnet state file, or the recorded anvil is not running any more."""
