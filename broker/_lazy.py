"""Lazy package faces: a package ``__init__`` names what it exports and where it lives, and the
submodule is imported on first access (PEP 562), so ``import broker.<area>.errors`` does not load
the area's servers, database or scheduler dependencies."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str,
    locations: Mapping[str, str],
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A module ``__getattr__`` and ``__dir__`` for ``package``.

    Args:
        package: the package's ``__name__``.
        locations: exported name -> submodule (relative to ``package``) that defines it.

    Returns:
        ``(__getattr__, __dir__)``; the first access imports the submodule and caches the value in
        the package namespace. An unknown name raises ``AttributeError``.
    """
    names = dict(locations)

    def __getattr__(name: str) -> Any:
        sub = names.get(name)
        if sub is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{sub}"), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(names))

    return __getattr__, __dir__
