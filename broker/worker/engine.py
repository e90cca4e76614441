"""The model manager: lazy loading, unloading (on request or after an idle timeout), and one GPU job
at a time on a single executor thread behind a bounded queue."""

from __future__ import annotations

import gc
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from broker.worker.errors import GenerationError, ModelLoadError, QueueFullError, WorkerError
from broker.worker.pipelines import ImagePipelines, ModelLimits, limits_for, load_pipelines
from broker.worker.pipelines.performance import (
    MASKLESS_BACKENDS,
    PerformanceOptions,
    PerformanceReport,
    apply_performance,
)

__all__ = ["EngineState", "EngineStatus", "Generation", "ImageEngine", "ImageTask"]

logger = logging.getLogger(__name__)

EngineState = Literal["idle", "loading", "generating"]


@dataclass
class ImageTask:
    """One generation job for the pipeline.

    Attributes:
        prompt: the text prompt; negative_prompt: optional (used only when guidance > 0).
        n: images to make (``num_images_per_prompt``); image ``i`` uses seed ``seed + i``.
        width / height: pixels, already validated against the model's :class:`ModelLimits`.
        num_inference_steps / guidance_scale: denoising steps and CFG scale.
        seed: seed of the CPU ``torch.Generator`` of the first image; image ``i`` is seeded
            ``seed + i``, so it equals the image of a request with seed ``seed + i`` and ``n = 1``
            (text-to-image; edits draw the input image's latent sample from ``seed`` in a batched
            call) and same seed and inputs → same pixels.
        image: a PIL image for edits (image-to-image), else ``None`` (text-to-image).
        mask: a PIL ``L`` mask (white = repaint) for inpainting edits, else ``None``.
        strength: edit strength in [0, 1] (how much of ``image`` is re-noised).
        cfg_normalization / cfg_truncation: diffusers ``ZImagePipeline`` guidance options (they act
            when ``guidance_scale`` > 1).
        max_sequence_length: prompt tokens for the text encoder (``None``: the model's limit).
        safety_check: run the engine's safety checker on the images (needs one configured).
    """

    prompt: str
    n: int
    width: int
    height: int
    num_inference_steps: int
    guidance_scale: float
    seed: int
    negative_prompt: str | None = None
    image: Any = None
    mask: Any = None
    strength: float = 0.6
    cfg_normalization: bool = False
    cfg_truncation: float = 1.0
    max_sequence_length: int | None = None
    safety_check: bool = False


@dataclass
class Generation:
    """What a task produced.

    Attributes:
        images: ``n`` PIL images (flagged ones included; the caller withholds them).
        has_nsfw_concepts: one bool per image from the safety checker (``True`` = flagged), or
            ``None`` when no check ran.
    """

    images: list[Any]
    has_nsfw_concepts: list[bool] | None = None


@dataclass(frozen=True)
class EngineStatus:
    """A snapshot of the engine (``GET /v1/internal/status``).

    Attributes:
        state: ``"idle"``, ``"loading"`` or ``"generating"``.
        loaded: whether the model is in memory; model: its reference; device: ``"cpu"``/``"cuda"``
            once loaded, else the configured device.
        queue_length: jobs waiting behind the running one; queue_size: the most that may wait.
        running: jobs running now (0 or 1).
        idle_seconds: seconds since the last job finished (``None`` before the first one).
        load_error: the message of the last failed load (``None`` once a load succeeds).
        performance: the speed settings in effect on the loaded model (attention backend,
            compile, CUDA graphs, batching of ``n`` and why any is off), ``None`` until loaded.
    """

    state: EngineState
    loaded: bool
    model: str
    device: str
    queue_length: int
    queue_size: int
    running: int
    idle_seconds: float | None
    load_error: str | None = None
    performance: PerformanceReport | None = None


class ImageEngine:
    """Owns the pipelines and runs :class:`ImageTask` s one at a time.

    The model loads lazily on the first task (state ``loading``), on the single executor thread.
    ``queue_size`` tasks may wait behind the running one; :meth:`submit` raises
    :class:`QueueFullError` beyond that. After ``idle_unload_seconds`` without work the model is
    unloaded (0 disables the timer); the next task loads it again.

    Args:
        model: ``"tiny"``, a Hub id or a local directory (see
            :func:`broker.worker.pipelines.load_pipelines`).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        queue_size: waiting tasks allowed (>= 0).
        idle_unload_seconds: idle time before unloading, in seconds (0 = never).
        loader: ``(model, device) -> ImagePipelines``; defaults to the real loader.
        safety_checker: ``None`` (no checker), ``"tiny"``, a Hub id or a directory of a diffusers
            safety checker (see :mod:`broker.worker.pipelines.safety`); loaded with the model.
        safety_loader: ``(reference, device) -> SafetyChecker``; defaults to the real loader.
        performance: speed settings applied after each load (see
            :func:`broker.worker.pipelines.performance.apply_performance`); default: the defaults
            of :class:`PerformanceOptions` (native attention, no compile, batched ``n``).
    """

    def __init__(
        self,
        model: str,
        device: str = "auto",
        *,
        queue_size: int = 8,
        idle_unload_seconds: float = 0.0,
        loader: Callable[[str, str], ImagePipelines] = load_pipelines,
        safety_checker: str | None = None,
        safety_loader: Callable[[str, str], Any] | None = None,
        performance: PerformanceOptions | None = None,
    ):
        self.model = model
        self.safety_checker = safety_checker or None
        self.device = device
        self.limits: ModelLimits = limits_for(model)
        self.queue_size = queue_size
        self.idle_unload_seconds = idle_unload_seconds
        self._loader = loader
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="zimage-gpu")
        self._lock = threading.Lock()  # counters, state, timer
        self._model_lock = threading.Lock()  # held while loading, generating or unloading
        self._safety_loader = safety_loader
        self._pipelines: ImagePipelines | None = None
        self._checker: Any = None
        self._state: EngineState = "idle"
        self._waiting = 0
        self._running = 0
        self._last_finished: float | None = None
        self._avg_job_seconds: float | None = None
        self._timer: threading.Timer | None = None
        self._closed = False
        self._load_error: str | None = None
        self.performance = performance or PerformanceOptions()
        self._report: PerformanceReport | None = None

    # -- public API ---------------------------------------------------------------------------

    def submit(
        self, task: ImageTask, on_start: Callable[[], None] | None = None
    ) -> Future[Generation]:
        """Queue ``task``; returns a future resolving to a :class:`Generation` (``n`` PIL images
        and, for ``task.safety_check``, the checker's flags).

        Args:
            task: the validated job.
            on_start: called on the executor thread when the task starts (before loading).

        Raises:
            QueueFullError: ``queue_size`` tasks already wait (``retry_after`` in seconds).
            WorkerError: the engine is shut down.
            The future raises :class:`ModelLoadError`, :class:`WorkerDependencyError` or
            :class:`GenerationError`.
        """
        with self._lock:
            if self._closed:
                raise WorkerError("the image engine is shut down")
            if self._waiting + self._running > self.queue_size:
                raise QueueFullError(
                    f"the image queue is full ({self._waiting} waiting); retry later",
                    retry_after=self._estimate_wait(self._waiting + self._running),
                )
            self._waiting += 1
            self._cancel_timer()
        return self._executor.submit(self._run, task, on_start)

    def status(self) -> EngineStatus:
        """A snapshot of state, load status and queue length (never blocks on a running job)."""
        with self._lock:
            pipes = self._pipelines
            return EngineStatus(
                state=self._state,
                loaded=pipes is not None,
                model=self.model,
                device=pipes.device if pipes is not None else self.device,
                queue_length=self._waiting,
                queue_size=self.queue_size,
                running=self._running,
                idle_seconds=(
                    None
                    if self._last_finished is None or self._running
                    else round(time.monotonic() - self._last_finished, 3)
                ),
                load_error=self._load_error,
                performance=self._report if pipes is not None else None,
            )

    def retry_after(self, position: int | None = None) -> int:
        """Suggested wait in whole seconds (>= 1) for a job ``position`` places from the front
        (default: behind everything queued now), from the running average job duration."""
        with self._lock:
            if position is None:
                position = self._waiting + self._running
            return self._estimate_wait(position)

    def load(self) -> ImagePipelines:
        """Load the model now (blocking; waits for a running job). Returns the pipelines.

        Raises:
            ModelLoadError: the load failed (any loader error, with its cause in the message);
                the next task or call tries again.
            WorkerDependencyError: the ``[worker]`` extra is missing.
        """
        with self._model_lock:
            return self._ensure_loaded()

    def unload(self) -> bool:
        """Drop the pipelines and free their memory (waits for a running job to finish).

        Returns:
            ``True`` if a model was loaded and is now unloaded, ``False`` if none was loaded.
        """
        with self._model_lock:
            return self._unload_locked()

    def shutdown(self) -> None:
        """Stop the idle timer and the executor (queued tasks are cancelled) and unload."""
        with self._lock:
            self._closed = True
            self._cancel_timer()
        self._executor.shutdown(wait=True, cancel_futures=True)
        self.unload()

    # -- executor thread ----------------------------------------------------------------------

    def _run(self, task: ImageTask, on_start: Callable[[], None] | None) -> Generation:
        with self._lock:
            self._waiting -= 1
            self._running = 1
        started = time.monotonic()
        try:
            if on_start is not None:
                on_start()
            with self._model_lock:
                pipes = self._ensure_loaded()
                self._set_state("generating")
                generate_started = time.monotonic()
                result = Generation(self._generate(pipes, task))
                if task.safety_check and self._checker is not None:
                    result.has_nsfw_concepts = self._checker.check(result.images)
                self._record_duration(time.monotonic() - generate_started)
            return result
        except WorkerError:
            raise
        except Exception as exc:  # torch / diffusers errors (OOM, bad tensors...)
            logger.exception("image generation failed")
            raise GenerationError(f"image generation failed: {type(exc).__name__}: {exc}") from exc
        finally:
            with self._lock:
                self._running = 0
                self._state = "idle"
                self._last_finished = time.monotonic()
                self._arm_timer()
            logger.debug("task done in %.3f s", time.monotonic() - started)

    def _ensure_loaded(self) -> ImagePipelines:
        """Load the pipelines unless loaded (``self._model_lock`` held). A failure leaves the
        engine unloaded, so the next task retries; its message is kept for the status."""
        if self._pipelines is None:
            logger.info("loading model %s on %s", self.model, self.device)
            pipes = self._load_step(
                f"model {self.model!r}", lambda: self._loader(self.model, self.device)
            )
            report = self._load_step(
                "the speed settings",
                lambda: apply_performance(
                    _transformer(pipes),
                    [pipes.text_to_image, pipes.image_to_image, pipes.inpaint],
                    pipes.device,
                    self.performance,
                ),
            )
            with self._lock:
                self._pipelines = pipes
                self._report = report
                self._load_error = None
        if self.safety_checker is not None and self._checker is None:
            self._load_checker()
        return self._pipelines

    def _load_checker(self) -> None:
        from broker.worker.pipelines.safety import load_safety_checker

        loader = self._safety_loader or load_safety_checker
        checker = self._load_step(
            f"safety checker {self.safety_checker!r}",
            lambda: loader(self.safety_checker, self.device),
        )
        with self._lock:
            self._checker = checker
            self._load_error = None

    def _load_step(self, what: str, load: Callable[[], Any]) -> Any:
        """Run one load (the model, the safety checker) in state ``loading``: a failure is kept
        for the status and raised as a :class:`WorkerError` (``ModelLoadError`` naming ``what``
        and the cause for anything else: OOM while moving to the device, broken files...)."""
        self._set_state("loading")
        try:
            return load()
        except WorkerError as exc:
            self._record_load_error(str(exc))
            raise
        except Exception as exc:
            logger.exception("loading %s failed", what)
            message = f"cannot load {what}: {type(exc).__name__}: {exc}"
            self._record_load_error(message)
            raise ModelLoadError(message) from exc
        finally:
            self._set_state("idle")

    def _record_load_error(self, message: str) -> None:
        with self._lock:
            self._load_error = message

    def _generate(self, pipes: ImagePipelines, task: ImageTask) -> list[Any]:
        """All ``task.n`` images: one pipeline call (``batch_n``) or one call per image, each
        image ``i`` from a CPU generator seeded ``task.seed + i``."""
        import torch

        generators = [
            torch.Generator(device="cpu").manual_seed(task.seed + i) for i in range(task.n)
        ]
        report = self._report or PerformanceReport()
        with self._attention_for(pipes, task, report):
            if report.batch_n:
                return self._call(pipes, task, task.n, generators)
            return [image for g in generators for image in self._call(pipes, task, 1, [g])]

    @contextmanager
    def _attention_for(
        self, pipes: ImagePipelines, task: ImageTask, report: PerformanceReport
    ) -> Iterator[None]:
        """Guided requests (``guidance_scale`` > 0) pad prompts of different lengths and need an
        attention mask: run them with native SDPA when the backend in use has no mask support."""
        if task.guidance_scale <= 0 or report.attention_backend not in MASKLESS_BACKENDS:
            yield
            return
        transformer = _transformer(pipes)
        transformer.set_attention_backend("native")
        try:
            yield
        finally:
            transformer.set_attention_backend(report.attention_backend)

    def _call(
        self, pipes: ImagePipelines, task: ImageTask, n: int, generators: list[Any]
    ) -> list[Any]:
        common = {
            "prompt": task.prompt,
            "negative_prompt": task.negative_prompt if task.guidance_scale > 0 else None,
            "height": task.height,
            "width": task.width,
            "num_inference_steps": task.num_inference_steps,
            "guidance_scale": task.guidance_scale,
            "cfg_normalization": task.cfg_normalization,
            "cfg_truncation": task.cfg_truncation,
            "num_images_per_prompt": n,
            "generator": generators,
            "max_sequence_length": task.max_sequence_length or pipes.limits.max_sequence_length,
        }
        if task.image is None:
            output = pipes.text_to_image(**common)
        elif task.mask is None:
            output = pipes.image_to_image(image=task.image, strength=task.strength, **common)
        else:
            output = pipes.inpaint(
                image=task.image, mask_image=task.mask, strength=task.strength, **common
            )
        return list(output.images)

    def _unload_locked(self) -> bool:
        with self._lock:
            pipes, self._pipelines = self._pipelines, None
            self._checker = None
            self._report = None
        if pipes is None:
            return False
        device = pipes.device
        del pipes
        gc.collect()
        if device == "cuda":
            import torch

            torch.cuda.empty_cache()
        logger.info("model %s unloaded", self.model)
        return True

    # -- helpers (self._lock held) ------------------------------------------------------------

    def _set_state(self, state: EngineState) -> None:
        with self._lock:
            self._state = state

    def _record_duration(self, seconds: float) -> None:
        with self._lock:
            avg = self._avg_job_seconds
            self._avg_job_seconds = seconds if avg is None else 0.7 * avg + 0.3 * seconds

    def _estimate_wait(self, position: int) -> int:
        per_job = self._avg_job_seconds if self._avg_job_seconds is not None else 1.0
        return max(1, math.ceil(per_job * max(position, 1)))

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _arm_timer(self) -> None:
        self._cancel_timer()
        if self.idle_unload_seconds > 0 and not self._closed and self._pipelines is not None:
            self._timer = threading.Timer(self.idle_unload_seconds, self._on_idle)
            self._timer.daemon = True
            self._timer.start()

    def _on_idle(self) -> None:
        with self._lock:
            if self._timer is not threading.current_thread():
                return  # re-armed or cancelled meanwhile
            if self._waiting or self._running:
                return
            self._timer = None
        if self._model_lock.acquire(blocking=False):
            try:
                with self._lock:
                    busy = bool(self._waiting or self._running)
                if not busy:
                    logger.info("idle for %s s: unloading", self.idle_unload_seconds)
                    self._unload_locked()
            finally:
                self._model_lock.release()


def _transformer(pipes: ImagePipelines) -> Any:
    """The transformer the pipelines share (the first pipeline that exposes one)."""
    for pipe in (pipes.text_to_image, pipes.image_to_image, pipes.inpaint):
        transformer = getattr(pipe, "transformer", None)
        if transformer is not None:
            return transformer
    raise GenerationError("the loaded pipelines have no transformer")
