"""broker.worker: the Z-Image GPU worker (``0g-broker worker serve``).

An OpenAI-compatible image server in front of diffusers' ``ZImagePipeline``: text-to-image, edits
(image-to-image and inpainting), async jobs with webhooks, lazy loading and idle unloading, one GPU
job at a time behind a bounded queue, and an optional diffusers safety checker. Its API follows the
Z-Image Vision server (seed 003): ``/health`` with ``model_loaded``, ``/v1/internal/status``,
``/v1/models`` with capabilities, ``/v1/internal/unload``.

Importing this package imports neither torch nor diffusers (the ``[worker]`` extra); they load with
the model. ``create_app``, ``serve`` and ``ImageEngine`` are imported on first access.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from broker.worker.errors import (
    GenerationError,
    InvalidImageRequestError,
    JobNotFoundError,
    ModelLoadError,
    QueueFullError,
    WorkerDependencyError,
    WorkerError,
)
from broker.worker.settings import DEFAULT_MODEL, WorkerSettings

if TYPE_CHECKING:
    from broker.worker.app import create_app
    from broker.worker.engine import ImageEngine, ImageTask
    from broker.worker.serve import serve

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

_LAZY = {
    "create_app": "broker.worker.app",
    "serve": "broker.worker.serve",
    "ImageEngine": "broker.worker.engine",
    "ImageTask": "broker.worker.engine",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'broker.worker' has no attribute {name!r}")
