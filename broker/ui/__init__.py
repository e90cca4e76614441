"""Web pages for the people who run the broker (issue #13).

* :func:`broker.ui.dashboard.mount_dashboard` — the user dashboard inside ``0g-broker serve`` at
  ``/ui/`` (same origin, same API key; read-only: account, auto-funding, requests, providers,
  playground, charts).
* :func:`broker.ui.standalone.create_ui_app` — ``0g-broker ui``: the same dashboard on its own, plus
  the actions that move money (deposit, transfer, refund) behind a confirmation and CSRF checks.
* :func:`broker.ui.ops.mount_ops` — the provider's ops page inside ``provider serve`` at ``/ui/``
  behind the gateway's admin key, and the gateway's ``/metrics``.

Pages are Jinja2 templates; the JavaScript (ours plus a vendored Chart.js, see
``static/README.md``) is served locally — no CDN. The pages read JSON endpoints only, so the JSON
stays the contract. Submodules are imported on use (``from broker.ui.dashboard import ...``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from broker._lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover - names for type checkers; loaded on first use
    from broker.ui.dashboard import mount_dashboard
    from broker.ui.ops import mount_ops
    from broker.ui.standalone import create_ui_app

__all__ = ["create_ui_app", "mount_dashboard", "mount_ops"]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {"create_ui_app": "standalone", "mount_dashboard": "dashboard", "mount_ops": "ops"},
)
