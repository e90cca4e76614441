"""Z-Image pipelines: the real loader (Hub id / local directory), the tiny random-weight one, and
the optional safety checker (:mod:`broker.worker.pipelines.safety`).

torch and diffusers are imported lazily inside these modules (the ``[worker]`` extra); importing
this package does not import them.
"""

from __future__ import annotations

from broker.worker.pipelines.base import (
    ImagePipelines,
    ModelLimits,
    require_worker_dependencies,
)

__all__ = [
    "ImagePipelines",
    "ModelLimits",
    "limits_for",
    "load_pipelines",
    "require_worker_dependencies",
]


def load_pipelines(model: str, device: str = "auto") -> ImagePipelines:
    """Load ``model`` (``"tiny"``, a Hub id or a local directory) on ``device``.

    See :func:`broker.worker.pipelines.loader.load_pipelines`.
    """
    from broker.worker.pipelines.loader import load_pipelines as _load

    return _load(model, device)


def limits_for(model: str) -> ModelLimits:
    """Limits and defaults of ``model`` without loading it; see
    :func:`broker.worker.pipelines.loader.limits_for`."""
    from broker.worker.pipelines.loader import limits_for as _limits

    return _limits(model)
