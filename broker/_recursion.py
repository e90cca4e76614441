"""Keep the interpreter's recursion limit where it was when third-party modules raise it.

``py_ecc`` (imported by ``eth_account``/``web3``) calls ``sys.setrecursionlimit(100000)`` when it is
first imported. With that limit, recursive C code such as the stdlib ``json`` parser no longer
stops at a Python ``RecursionError`` and overflows the C stack instead: a 200 KB body of nested
arrays then kills the process (segmentation fault). :func:`install` adds an import hook that runs
those modules' import as usual and puts the previous limit back right after it.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

__all__ = ["RESTORED_MODULES", "install"]

#: Top-level modules whose import raises the recursion limit as a side effect.
RESTORED_MODULES = frozenset({"py_ecc"})


class _RestoringLoader(importlib.abc.Loader):
    def __init__(self, loader: importlib.abc.Loader) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        limit = sys.getrecursionlimit()
        try:
            self._loader.exec_module(module)
        finally:
            sys.setrecursionlimit(limit)

    def __getattr__(self, name: str):  # get_resource_reader, is_package, ... of the real loader
        return getattr(self._loader, name)


class _RestoringFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname not in RESTORED_MODULES:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None:
                    spec.loader = _RestoringLoader(spec.loader)
                return spec
        return None


def install() -> None:
    """Install the hook once (idempotent). If a listed module was imported before, its raised
    limit is not undone (the process chose it); modules imported afterwards are covered."""
    if not any(isinstance(f, _RestoringFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _RestoringFinder())
