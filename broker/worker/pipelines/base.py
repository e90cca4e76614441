"""The loaded pipeline bundle and the lazy import of the ``[worker]`` extra."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from broker.worker.errors import WorkerDependencyError

__all__ = ["ImagePipelines", "ModelLimits", "require_worker_dependencies", "select_device"]

_EXTRA = ("torch", "diffusers", "transformers", "PIL")


def require_worker_dependencies() -> dict[str, ModuleType]:
    """Import torch, diffusers, transformers and Pillow.

    Returns:
        ``{"torch": module, "diffusers": module, "transformers": module, "PIL": module}``.

    Raises:
        WorkerDependencyError: one of them is missing (install ``0g-broker[worker]``).
    """
    modules: dict[str, ModuleType] = {}
    for name in _EXTRA:
        try:
            modules[name] = importlib.import_module(name)
        except ImportError as exc:
            raise WorkerDependencyError(
                f"the Z-Image worker needs {name!r}: install the worker extra "
                "(pip install '0g-broker[worker]'; torch pinned as in CONTRIBUTING.md)"
            ) from exc
    return modules


def select_device(device: str = "auto") -> tuple[str, Any]:
    """Choose the torch device and dtype.

    Args:
        device: ``"auto"`` (CUDA when available, else CPU), ``"cpu"`` or ``"cuda"``.

    Returns:
        ``(device_name, torch_dtype)``: ``("cuda", torch.bfloat16)`` or ``("cpu", torch.float32)``.

    Raises:
        WorkerDependencyError: ``"cuda"`` requested but no CUDA device is available, or torch
        missing.
    """
    torch = require_worker_dependencies()["torch"]
    if device not in ("auto", "cpu", "cuda"):
        raise WorkerDependencyError(f"unknown device {device!r} (auto, cpu or cuda)")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise WorkerDependencyError("device 'cuda' requested but torch sees no CUDA device")
    return device, (torch.bfloat16 if device == "cuda" else torch.float32)


@dataclass(frozen=True)
class ModelLimits:
    """Request limits and recommended defaults of a model, known before it is loaded.

    Attributes:
        size_multiple: width and height must be multiples of it (pixels; ``2 × vae_scale_factor``).
        min_side / max_side: inclusive pixel limits of each side.
        default_size: ``(width, height)`` in pixels when a request gives no ``size``.
        default_steps: ``num_inference_steps`` when a request gives none.
        default_guidance: ``guidance_scale`` of generations when a request gives none.
        max_sequence_length: the most prompt tokens given to the text encoder.
        default_edit_guidance: ``guidance_scale`` of edits when a request gives none (the Z-Image
            Vision server's 1.5 where the model uses guidance; 0.0 for guidance-distilled Turbo).
    """

    size_multiple: int
    min_side: int
    max_side: int
    default_size: tuple[int, int]
    default_steps: int
    default_guidance: float
    max_sequence_length: int = 512
    default_edit_guidance: float = 1.5


@dataclass
class ImagePipelines:
    """A loaded Z-Image model: the text-to-image pipeline and the edit pipelines sharing its
    components, with the model's limits and recommended defaults.

    Attributes:
        name: the model reference it was loaded from (``"tiny"``, Hub id or directory).
        text_to_image: a ``diffusers.ZImagePipeline``.
        image_to_image: a ``diffusers.ZImageImg2ImgPipeline`` (edits without a mask).
        inpaint: a ``diffusers.ZImageInpaintPipeline`` (edits with a mask).
        device: ``"cpu"`` or ``"cuda"``; dtype: the torch dtype of the weights.
        limits: the model's :class:`ModelLimits`.
    """

    name: str
    text_to_image: Any
    image_to_image: Any
    inpaint: Any
    device: str
    dtype: Any
    limits: ModelLimits
