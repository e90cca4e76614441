"""Composition: the code that starts several servers together, the layer between the CLI and
the servers (``proxy``, ``provider``, ``worker``, ``devnet``, ``ui``); only :mod:`broker.cli`
imports it.

Modules: ``servers`` (:class:`LocalServer`, the one way to run a local server, in a thread or a
process), ``provider_stack`` (a complete provider on the devnet: worker + gateway, registered and
acknowledged), ``local_devnet`` (``0g-broker devnet up | down | status``), ``demo``
(``0g-broker demo``), ``errors``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from broker._lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover - names for type checkers; loaded on first use
    from broker.stacks.demo import DemoResult, check_demo_options, run_demo
    from broker.stacks.errors import ServerStartError
    from broker.stacks.local_devnet import devnet_down, devnet_status, devnet_up
    from broker.stacks.provider_stack import ProviderStack, start_provider_stack
    from broker.stacks.servers import LocalServer

__all__ = [
    "DemoResult",
    "LocalServer",
    "ProviderStack",
    "ServerStartError",
    "check_demo_options",
    "devnet_down",
    "devnet_status",
    "devnet_up",
    "run_demo",
    "start_provider_stack",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "DemoResult": "demo",
        "check_demo_options": "demo",
        "run_demo": "demo",
        "ServerStartError": "errors",
        "devnet_down": "local_devnet",
        "devnet_status": "local_devnet",
        "devnet_up": "local_devnet",
        "ProviderStack": "provider_stack",
        "start_provider_stack": "provider_stack",
        "LocalServer": "servers",
    },
)
