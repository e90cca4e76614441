"""Errors of the composition code (:mod:`broker.stacks`)."""

from __future__ import annotations

from broker._exceptions import DevnetError

__all__ = ["ServerStartError"]


class ServerStartError(DevnetError):
    """A server of a local stack (the devnet's provider worker or gateway, the demo's ``serve``)
    did not start or did not answer ``/health`` in time."""
