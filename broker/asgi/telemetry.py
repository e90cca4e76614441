"""FastAPI's native OpenTelemetry hooks, switched off for our servers.

Recent FastAPI releases check on every request whether an OpenTelemetry tracer, meter or logger
provider is configured (:class:`fastapi.telemetry._asgi.NativeTelemetry`), which reads the
process environment and the global providers each time: about 60 µs of a local proxy's request on
a small machine. Our servers export their own Prometheus metrics (``/metrics``) and configure no
OpenTelemetry provider, so :func:`fastapi_telemetry_off` gives them the option that makes that
check a constant ``False``. Older FastAPI releases have neither the hook nor the option.
"""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["fastapi_telemetry_off"]


def fastapi_telemetry_off() -> dict[str, Any]:
    """Keyword arguments for ``FastAPI(...)`` that switch off its native tracing, metrics and logs.

    Returns:
        ``{"telemetry": {"tracing": False, "metrics": False, "logs": False}}`` when the installed
        FastAPI takes a ``telemetry`` argument, else ``{}``.
    """
    from fastapi import FastAPI

    if "telemetry" not in inspect.signature(FastAPI.__init__).parameters:
        return {}
    return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
