"""Real loading of a Z-Image model (Hub id or local directory) through diffusers'
``from_pretrained``.

Recommended defaults for Z-Image-Turbo (model card and the diffusers 0.42 ``ZImagePipeline``
example): 8 inference steps (9 before diffusers PR #13730 fixed the step count) and
``guidance_scale = 0.0`` (Turbo is guidance-distilled), 1024×1024.
"""

from __future__ import annotations

import json
from pathlib import Path

from broker.worker.errors import ModelLoadError
from broker.worker.pipelines.base import (
    ImagePipelines,
    ModelLimits,
    require_worker_dependencies,
    select_device,
)

__all__ = ["TURBO_DEFAULT_GUIDANCE", "TURBO_DEFAULT_STEPS", "limits_for", "load_pipelines"]

TURBO_DEFAULT_STEPS = 8
TURBO_DEFAULT_GUIDANCE = 0.0
_BASE_DEFAULT_STEPS = 50
_BASE_DEFAULT_GUIDANCE = 4.0
_BASE_DEFAULT_EDIT_GUIDANCE = 1.5  # the Z-Image Vision server's edit default (seed 003)


def _size_multiple(model: str) -> int:
    """``2 × vae_scale_factor``: read from a local directory's ``vae/config.json``; 16 otherwise
    (Z-Image's VAE has 4 blocks, scale factor 8)."""
    config = Path(model).expanduser() / "vae" / "config.json"
    try:
        blocks = json.loads(config.read_text())["block_out_channels"]
        return 2 ** (len(blocks) - 1) * 2
    except (OSError, ValueError, KeyError, TypeError):
        return 16


def limits_for(model: str) -> ModelLimits:
    """The request limits and defaults of ``model`` without loading it (no torch import).

    Args:
        model: ``"tiny"``, a Hub id or a local directory.

    Returns:
        :data:`broker.worker.pipelines.tiny.TINY_LIMITS` for ``"tiny"``; otherwise sizes multiple of
        ``2 × vae_scale_factor`` (16 for Z-Image) in [that multiple, 2048], default 1024×1024, and
        8 steps / guidance 0.0 (edits too) for Turbo models (name contains "turbo"), otherwise 50
        steps, guidance 4.0 and edit guidance 1.5 (the Z-Image Vision server's defaults).
    """
    if model == "tiny":
        from broker.worker.pipelines.tiny import TINY_LIMITS

        return TINY_LIMITS
    multiple = _size_multiple(model)
    turbo = "turbo" in model.lower()
    return ModelLimits(
        size_multiple=multiple,
        min_side=multiple,
        max_side=2048,
        default_size=(1024, 1024),
        default_steps=TURBO_DEFAULT_STEPS if turbo else _BASE_DEFAULT_STEPS,
        default_guidance=TURBO_DEFAULT_GUIDANCE if turbo else _BASE_DEFAULT_GUIDANCE,
        max_sequence_length=512,
        default_edit_guidance=TURBO_DEFAULT_GUIDANCE if turbo else _BASE_DEFAULT_EDIT_GUIDANCE,
    )


def load_pipelines(model: str, device: str = "auto") -> ImagePipelines:
    """Load a Z-Image model and derive its edit pipelines (components shared via ``from_pipe``).

    Args:
        model: ``"tiny"`` (see :mod:`broker.worker.pipelines.tiny`), a Hub id such as
            ``"Tongyi-MAI/Z-Image-Turbo"`` (downloaded or taken from the HF cache; honours
            ``HF_HUB_OFFLINE``) or a local directory written by ``save_pretrained``.
        device: ``"auto"`` (CUDA + bfloat16 when available, else CPU + float32), ``"cpu"``,
            ``"cuda"``.

    Returns:
        :class:`ImagePipelines` with :func:`limits_for` ``(model)``.

    Raises:
        WorkerDependencyError: the ``[worker]`` extra is missing or CUDA was requested but absent.
        ModelLoadError: diffusers could not load the model.
    """
    if model == "tiny":
        from broker.worker.pipelines.tiny import build_tiny_pipelines

        return build_tiny_pipelines(device)
    diffusers = require_worker_dependencies()["diffusers"]
    device, dtype = select_device(device)
    try:
        text_to_image = diffusers.ZImagePipeline.from_pretrained(model, dtype=dtype)
    except Exception as exc:  # diffusers raises OSError, ValueError, HF hub errors...
        raise ModelLoadError(f"cannot load Z-Image model {model!r}: {exc}") from exc
    text_to_image = text_to_image.to(device)
    text_to_image.set_progress_bar_config(disable=True)
    image_to_image = diffusers.ZImageImg2ImgPipeline.from_pipe(text_to_image)
    inpaint = diffusers.ZImageInpaintPipeline.from_pipe(text_to_image)
    for pipe in (image_to_image, inpaint):
        pipe.set_progress_bar_config(disable=True)
    return ImagePipelines(
        name=model,
        text_to_image=text_to_image,
        image_to_image=image_to_image,
        inpaint=inpaint,
        device=device,
        dtype=dtype,
        limits=limits_for(model),
    )
