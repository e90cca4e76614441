"""broker.worker: the Z-Image GPU worker (``0g-broker worker serve``).

An OpenAI-compatible image server in front of diffusers' ``ZImagePipeline``: text-to-image, edits
(image-to-image and inpainting), async jobs with webhooks, lazy loading and idle unloading, one GPU
job at a time behind a bounded queue, and an optional diffusers safety checker. Its API follows the
Z-Image Vision server (seed 003): ``/health`` with ``model_loaded``, ``/v1/internal/status``,
``/v1/models`` with capabilities, ``/v1/internal/unload``.

Importing this package imports neither torch nor diffusers (the ``[worker]`` extra); they load with
the model. Every name below is imported on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from broker._lazy import lazy_exports

if TYPE_CHECKING:  # pragma: no cover - names for type checkers; loaded on first use
    from broker.worker.app import create_app
    from broker.worker.engine import ImageEngine, ImageTask
    from broker.worker.errors import (
        GenerationError,
        InvalidImageRequestError,
        JobNotFoundError,
        ModelLoadError,
        QueueFullError,
        WorkerDependencyError,
        WorkerError,
    )
    from broker.worker.serve import serve
    from broker.worker.settings import DEFAULT_MODEL, WorkerSettings

__all__ = [
    "DEFAULT_MODEL",
    "GenerationError",
    "ImageEngine",
    "ImageTask",
    "InvalidImageRequestError",
    "JobNotFoundError",
    "ModelLoadError",
    "QueueFullError",
    "WorkerDependencyError",
    "WorkerError",
    "WorkerSettings",
    "create_app",
    "serve",
]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "DEFAULT_MODEL": "settings",
        "GenerationError": "errors",
        "ImageEngine": "engine",
        "ImageTask": "engine",
        "InvalidImageRequestError": "errors",
        "JobNotFoundError": "errors",
        "ModelLoadError": "errors",
        "QueueFullError": "errors",
        "WorkerDependencyError": "errors",
        "WorkerError": "errors",
        "WorkerSettings": "settings",
        "create_app": "app",
        "serve": "serve",
    },
)
