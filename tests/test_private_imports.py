"""No module imports another module's private names (``from broker.x.y import _name``; private
modules such as ``broker._exceptions`` are fine), and no module calls a private method of the
contract wrappers from outside ``broker.chain``: what is shared is public."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "broker"


def _is_module(dotted: str) -> bool:
    path = SRC.parent.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _modules():
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC.parent).with_suffix("")
        yield ".".join(rel.parts).removesuffix(".__init__"), ast.parse(path.read_text())


def test_no_private_names_imported_from_other_modules():
    bad = []
    for module, tree in _modules():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.module.split(".")[0] == "broker"
                and node.module != module
            ):
                bad += [
                    f"{module}: from {node.module} import {a.name}"
                    for a in node.names
                    if a.name.startswith("_")
                    and not a.name.startswith("__")
                    and not _is_module(f"{node.module}.{a.name}")
                ]
    assert bad == []


def test_contract_wrapper_internals_stay_in_chain():
    bad = []
    for module, tree in _modules():
        if module.startswith("broker.chain"):
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ("_send", "_call")
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
            ):
                bad.append(f"{module}:{node.lineno}: .{node.attr}")
    assert bad == []
