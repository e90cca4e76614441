"""0g-broker: a Python broker for the 0G Compute Network.

Public entry points::

    from broker import create_broker
    b = create_broker(network="devnet")
    b.ledger.add_ledger("3")

See the README for the command-line interface (``0g-broker``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from broker import _recursion
from broker._exceptions import BrokerError

_recursion.install()  # py_ecc (via web3) must not leave the recursion limit raised to 100 000

if TYPE_CHECKING:  # pragma: no cover
    from broker.broker import Broker, ReadOnlyBroker, create_broker, create_read_only_broker

__all__ = [
    "Broker",
    "BrokerError",
    "ReadOnlyBroker",
    "__version__",
    "create_broker",
    "create_read_only_broker",
    "errors",
]

__version__ = "0.1.0"

_LAZY = {"Broker", "ReadOnlyBroker", "create_broker", "create_read_only_broker"}
#: Submodules reachable as attributes of ``broker`` (imported on first access).
_LAZY_MODULES = {"errors", "units"}


def __getattr__(name: str) -> Any:
    # Lazy: importing ``broker`` must stay cheap (web3 is only loaded when a broker is needed).
    if name in _LAZY:
        from broker import broker as _broker_module

        return getattr(_broker_module, name)
    if name in _LAZY_MODULES:  # ``import broker; broker.errors.X`` without importing it first
        import importlib

        return importlib.import_module(f"broker.{name}")
    raise AttributeError(f"module 'broker' has no attribute {name!r}")
