"""The optional image safety checker: diffusers' ``StableDiffusionSafetyChecker`` (a CLIP vision
model with concept embeddings and thresholds) and its ``CLIPImageProcessor``.

Loaded from a Hub id (``CompVis/stable-diffusion-safety-checker``), a local directory written by
``save_pretrained`` (the model and processor files at its root, or in ``safety_checker/`` and
``feature_extractor/`` as in a pipeline folder), or ``"tiny"``: random weights built in code for
tests (with diffusers' initial thresholds it flags nothing). torch, diffusers and transformers are
imported lazily.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from broker.worker.errors import ModelLoadError
from broker.worker.pipelines.base import require_worker_dependencies, select_device

__all__ = ["SafetyChecker", "build_tiny_safety_checker", "load_safety_checker"]


@dataclass
class SafetyChecker:
    """A loaded safety checker.

    Attributes:
        name: the reference it was loaded from (``"tiny"``, Hub id or directory).
        model: a ``diffusers.pipelines.stable_diffusion.StableDiffusionSafetyChecker``.
        feature_extractor: the ``transformers.CLIPImageProcessor`` feeding it.
        device / dtype: where the model runs.
    """

    name: str
    model: Any
    feature_extractor: Any
    device: str
    dtype: Any

    def check(self, images: list[Any]) -> list[bool]:
        """Run the checker on PIL images.

        Args:
            images: RGB ``PIL.Image.Image`` s.

        Returns:
            ``has_nsfw_concepts``: one bool per image (``True`` = flagged), as diffusers names it.
        """
        import numpy as np

        clip_input = self.feature_extractor(
            [image.convert("RGB") for image in images], return_tensors="pt"
        ).pixel_values.to(self.device, self.dtype)
        arrays = [np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0 for image in images]
        _, flags = self.model(clip_input=clip_input, images=arrays)
        return [bool(flag) for flag in flags]


def build_tiny_safety_checker(device: str = "auto", *, seed: int = 0) -> SafetyChecker:
    """A random-weight checker with a tiny CLIP vision tower (32 px input), for tests.

    Args:
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``; seed: seed of the weights (the global torch
            RNG state is left untouched).

    Returns:
        :class:`SafetyChecker` named ``"tiny"``; its thresholds are diffusers' initial ones (1.0),
        under which no image is flagged. Raises WorkerDependencyError without the extra.
    """
    mods = require_worker_dependencies()
    torch, transformers = mods["torch"], mods["transformers"]
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker

    device, dtype = select_device(device)
    config = transformers.CLIPConfig(
        text_config={
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "vocab_size": 64,
            "bos_token_id": 0,
            "eos_token_id": 1,
            "pad_token_id": 1,
        },
        vision_config={
            "hidden_size": 16,
            "intermediate_size": 16,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=8,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = StableDiffusionSafetyChecker(config)
        with torch.no_grad():  # concept directions: random, like trained ones
            model.concept_embeds.copy_(torch.randn_like(model.concept_embeds))
            model.special_care_embeds.copy_(torch.randn_like(model.special_care_embeds))
    processor = _processor_class(transformers)(
        size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}
    )
    return SafetyChecker("tiny", model.to(device, dtype).eval(), processor, device, dtype)


def load_safety_checker(reference: str, device: str = "auto") -> SafetyChecker:
    """Load a safety checker.

    Args:
        reference: ``"tiny"``, a Hub id or a local directory (see the module docstring).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.

    Returns:
        :class:`SafetyChecker`.

    Raises:
        ModelLoadError: the model or its image processor could not be loaded (cause in the text).
        WorkerDependencyError: the ``[worker]`` extra is missing.
    """
    if reference == "tiny":
        return build_tiny_safety_checker(device)
    transformers = require_worker_dependencies()["transformers"]
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker

    device, dtype = select_device(device)
    nested = (Path(reference).expanduser() / "safety_checker").is_dir()
    try:
        model = StableDiffusionSafetyChecker.from_pretrained(
            reference, subfolder="safety_checker" if nested else "", torch_dtype=dtype
        )
        processor = _processor_class(transformers).from_pretrained(
            reference, subfolder="feature_extractor" if nested else ""
        )
    except Exception as exc:  # OSError, ValueError, Hub errors...
        raise ModelLoadError(
            f"cannot load safety checker {reference!r}: {type(exc).__name__}: {exc}"
        ) from exc
    return SafetyChecker(reference, model.to(device).eval(), processor, device, dtype)


def _processor_class(transformers: Any) -> Any:
    """``CLIPImageProcessor``'s Pillow backend where transformers has one (no torchvision
    needed)."""
    return getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
