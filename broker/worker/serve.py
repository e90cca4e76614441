"""Run the worker with uvicorn (``0g-broker worker serve``)."""

from __future__ import annotations

import uvicorn

from broker.worker.app import create_app
from broker.worker.settings import WorkerSettings

__all__ = ["serve"]


def serve(settings: WorkerSettings | None = None) -> None:
    """Serve the worker on ``settings.host``:``settings.port`` (default 127.0.0.1:8000) until
    interrupted. The model loads on the first image request, not here."""
    settings = settings or WorkerSettings()
    uvicorn.run(
        create_app(settings), host=settings.host, port=settings.port, log_level=settings.log_level
    )
