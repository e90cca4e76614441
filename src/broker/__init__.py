"""0g-broker: a Python broker for the 0G Compute Network.

Public entry points::

    from broker import create_broker
    b = create_broker(network="devnet")
    b.ledger.add_ledger("3")

See the README for the command-line interface (``0g-broker``).
"""

from __future__ import annotations

from broker._exceptions import BrokerError

__all__ = ["BrokerError", "__version__"]

__version__ = "0.1.0"
