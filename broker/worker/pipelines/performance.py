"""Speed settings of a loaded Z-Image model: the transformer's attention backend (diffusers'
``ModelMixin.set_attention_backend``), ``torch.compile`` of the transformer, CUDA graphs (compile
mode ``reduce-overhead``) and batching of ``n`` (one pipeline call with ``num_images_per_prompt=n``
instead of one call per image).

Each one is applied only where it is supported; otherwise it is switched off and the reason is
logged once and kept in :attr:`PerformanceReport.notes` (shown by ``/v1/internal/status`` and
``/health``). Unsupported means: not a CUDA device (CPU; MPS is not a worker device), a kernel
package that is not installed (``flash-attn``, ``sageattention``, Triton for ``torch.compile``),
or a pipeline whose ``__call__`` has no ``num_images_per_prompt``. torch and diffusers are used
through the loaded pipeline objects; this module imports neither at import time.
"""

from __future__ import annotations

import importlib.util
import inspect
import logging
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

__all__ = [
    "ATTENTION_BACKENDS",
    "MASKLESS_BACKENDS",
    "AttentionBackend",
    "CompileMode",
    "PerformanceOptions",
    "PerformanceReport",
    "apply_performance",
    "inductor_mode",
]

logger = logging.getLogger(__name__)

#: Accepted attention backends: ``auto`` (PyTorch SDPA, which picks its flash / memory-efficient /
#: cuDNN kernel per call and handles the padding mask of guided requests) and diffusers
#: ``AttentionBackendName`` values that work with Z-Image's attention processor.
AttentionBackend = Literal[
    "auto",
    "native",
    "_native_math",
    "_native_efficient",
    "_native_flash",
    "_native_cudnn",
    "flash",
    "_flash_3",
    "sage",
]
ATTENTION_BACKENDS: tuple[str, ...] = get_args(AttentionBackend)
#: Backends without attention-mask support: guided requests (``guidance_scale`` > 0, whose
#: positive and negative prompts differ in length) run with ``native`` instead.
MASKLESS_BACKENDS = frozenset({"_native_flash", "flash", "_flash_3", "sage"})
#: Backends that run on any device; the others need CUDA.
_ANY_DEVICE = frozenset({"native", "_native_math"})
#: Backend → (importable module, package name) it needs.
_KERNELS = {
    "flash": ("flash_attn", "flash-attn"),
    "_flash_3": ("flash_attn_interface", "flash-attn 3 (flash_attn_interface)"),
    "sage": ("sageattention", "sageattention"),
}

CompileMode = Literal["default", "max-autotune"]


def inductor_mode(compile_mode: str, cuda_graphs: bool) -> str:
    """The ``torch.compile`` mode for a compile mode and the CUDA-graphs switch.

    Args:
        compile_mode: ``"default"`` or ``"max-autotune"``.
        cuda_graphs: capture CUDA graphs.

    Returns:
        ``"default"``, ``"reduce-overhead"`` (default + graphs), ``"max-autotune-no-cudagraphs"``
        or ``"max-autotune"`` (which captures graphs).
    """
    if compile_mode == "max-autotune":
        return "max-autotune" if cuda_graphs else "max-autotune-no-cudagraphs"
    return "reduce-overhead" if cuda_graphs else "default"


@dataclass(frozen=True)
class PerformanceOptions:
    """What the operator asked for (``ZG_WORKER_ATTENTION_BACKEND`` ... in
    :class:`broker.worker.settings.WorkerSettings`).

    Attributes:
        attention_backend: one of :data:`ATTENTION_BACKENDS`.
        compile: ``torch.compile`` the transformer (CUDA only).
        compile_mode: ``"default"`` or ``"max-autotune"``.
        cuda_graphs: capture CUDA graphs (needs ``compile``; mode ``reduce-overhead``).
        batch_n: one pipeline call for all ``n`` images of a request.
    """

    attention_backend: str = "auto"
    compile: bool = False
    compile_mode: str = "default"
    cuda_graphs: bool = False
    batch_n: bool = True

    def __post_init__(self) -> None:
        if self.attention_backend not in ATTENTION_BACKENDS:
            raise ValueError(
                f"unknown attention backend {self.attention_backend!r} "
                f"(one of {', '.join(ATTENTION_BACKENDS)})"
            )
        if self.compile_mode not in get_args(CompileMode):
            raise ValueError(f"unknown compile mode {self.compile_mode!r} (default, max-autotune)")
        if self.cuda_graphs and not self.compile:
            raise ValueError(
                "cuda_graphs needs compile (CUDA graphs are captured by torch.compile)"
            )


@dataclass
class PerformanceReport:
    """What is in effect on the loaded model.

    Attributes:
        attention_backend: the diffusers backend set on the transformer (``"native"`` = SDPA).
        compile: the ``torch.compile`` mode in use, or ``None`` (off).
        cuda_graphs: whether CUDA graphs are captured.
        batch_n: whether the ``n`` images of a request are made in one pipeline call.
        notes: one line per requested setting that was switched off, with the reason.
    """

    attention_backend: str = "native"
    compile: str | None = None
    cuda_graphs: bool = False
    batch_n: bool = True
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready dict (the fields above)."""
        return {
            "attention_backend": self.attention_backend,
            "compile": self.compile,
            "cuda_graphs": self.cuda_graphs,
            "batch_n": self.batch_n,
            "notes": list(self.notes),
        }


def _off(report: PerformanceReport, note: str) -> None:
    logger.warning("performance setting off: %s", note)
    report.notes.append(note)


def _attention_unavailable(backend: str, device: str) -> str | None:
    kernel = _KERNELS.get(backend)
    if kernel is not None and importlib.util.find_spec(kernel[0]) is None:
        return f"attention backend {backend!r} off: {kernel[1]} is not installed; native SDPA used"
    if backend not in _ANY_DEVICE and device != "cuda":
        return (
            f"attention backend {backend!r} off: it needs CUDA (device {device}); native SDPA used"
        )
    return None


def _set_attention(transformer: Any, options: PerformanceOptions, device: str, report) -> None:
    backend = "native" if options.attention_backend == "auto" else options.attention_backend
    reason = _attention_unavailable(backend, device)
    if reason is None and backend != "native":
        if not hasattr(transformer, "set_attention_backend"):
            reason = (
                f"attention backend {backend!r} off: the installed diffusers has no attention "
                "backends; native SDPA used"
            )
        else:
            try:
                transformer.set_attention_backend(backend)
            except (RuntimeError, ValueError, ImportError) as exc:  # diffusers' requirement checks
                reason = f"attention backend {backend!r} off: {exc}; native SDPA used"
    if reason is not None:
        _off(report, reason)
        backend = "native"
    report.attention_backend = backend


def _compile(transformer: Any, options: PerformanceOptions, device: str, report) -> None:
    if not options.compile:
        return
    what = "torch.compile" + (" with CUDA graphs" if options.cuda_graphs else "")
    if device != "cuda":
        _off(report, f"{what} off: used on CUDA only (device {device})")
        return
    if importlib.util.find_spec("triton") is None:
        _off(report, f"{what} off: Triton is not installed")
        return
    mode = inductor_mode(options.compile_mode, options.cuda_graphs)
    transformer.compile(mode=mode, fullgraph=False, dynamic=False)
    report.compile = mode
    report.cuda_graphs = options.cuda_graphs


def _batching(pipelines: list[Any], options: PerformanceOptions, report) -> None:
    if not options.batch_n:
        report.batch_n = False
        return
    for pipe in pipelines:
        params = inspect.signature(pipe).parameters
        takes_kwargs = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        if "num_images_per_prompt" not in params and not takes_kwargs:
            _off(report, f"batch_n off: {type(pipe).__name__} has no num_images_per_prompt")
            report.batch_n = False
            return
    report.batch_n = True


def apply_performance(
    transformer: Any, pipelines: list[Any], device: str, options: PerformanceOptions
) -> PerformanceReport:
    """Apply ``options`` to a loaded model.

    Args:
        transformer: the pipelines' shared ``ZImageTransformer2DModel``.
        pipelines: the text-to-image and edit pipelines (checked for ``num_images_per_prompt``).
        device: ``"cpu"`` or ``"cuda"`` (where the model is).
        options: the requested :class:`PerformanceOptions`.

    Returns:
        The :class:`PerformanceReport` of what is in effect; unsupported settings are off, each
        with one warning log line and a note.
    """
    report = PerformanceReport()
    _set_attention(transformer, options, device, report)
    _compile(transformer, options, device, report)
    _batching(pipelines, options, report)
    return report
