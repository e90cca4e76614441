"""Settings field types for the guard of :mod:`broker.asgi.guard`, shared by every server that
runs behind it (``serve``, the worker): one parse and one check, in one place.

``AllowedHosts`` / ``AllowedOrigins`` take ``"a, b"`` or a JSON list from the environment
(:func:`~broker.asgi.guard.split_list`) and are checked the way :class:`LocalGuard` reads them,
so a malformed entry fails when the settings load (``GuardConfigError``, a ``ValueError``), not on
the first request.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BeforeValidator
from pydantic_settings import NoDecode

from broker.asgi.guard import LocalGuard, split_list

__all__ = ["AllowedHosts", "AllowedOrigins"]


def _check_hosts(value: list[str]) -> list[str]:
    LocalGuard(None, allowed_hosts=value)  # GuardConfigError (a ValueError) when bad
    return value


def _check_origins(value: list[str]) -> list[str]:
    LocalGuard(None, allowed_origins=value)
    return value


#: ``Host`` names a server accepts besides the loopback ones (``name``, ``name:port``, ``[v6]``).
AllowedHosts = Annotated[
    list[str], NoDecode, BeforeValidator(split_list), AfterValidator(_check_hosts)
]
#: Web origins (``scheme://host[:port]``) allowed to call a server cross-origin.
AllowedOrigins = Annotated[
    list[str], NoDecode, BeforeValidator(split_list), AfterValidator(_check_origins)
]
