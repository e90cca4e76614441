"""The image service: turns validated protocol requests into engine tasks, runs them (sync or as
async jobs), encodes the results and builds the OpenAI-shaped responses."""

from __future__ import annotations

import asyncio
import base64
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

from broker.worker.engine import Generation, ImageEngine, ImageTask
from broker.worker.errors import InvalidImageRequestError, WorkerError
from broker.worker.images import FileStore, decode_image, decode_mask, encode_image, parse_size
from broker.worker.jobs import ImageJob, JobRegistry, WebhookNotifier
from broker.worker.protocol import ImageData, ImageEditForm, ImageGenerationRequest, ImagesResponse
from broker.worker.settings import WorkerSettings

__all__ = ["ImageService", "OutputOptions"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class OutputOptions:
    """How results are returned: ``response_format`` (b64_json | url), ``output_format``
    (png | jpeg | webp), ``output_compression`` (0–100 or ``None``), the ``base_url`` used to
    build ``url`` values (no trailing slash), and ``report_safety``: whether the answer carries
    ``safety_checked`` (the worker has a checker, or the request set ``enable_safety_checker``)."""

    response_format: str
    output_format: str
    output_compression: int | None
    base_url: str
    report_safety: bool = False


class ImageService:
    """Glue between the HTTP layer and :class:`ImageEngine`.

    Args:
        settings: the worker settings (limits, TTLs, public base URL).
        engine: the model manager; jobs: the async job registry; files: the ``url`` file store;
        notifier: webhook sender.
    """

    def __init__(
        self,
        settings: WorkerSettings,
        engine: ImageEngine,
        jobs: JobRegistry,
        files: FileStore,
        notifier: WebhookNotifier,
    ):
        self.settings = settings
        self.engine = engine
        self.jobs = jobs
        self.files = files
        self.notifier = notifier
        self._background: set[asyncio.Task[Any]] = set()

    # -- request → task -----------------------------------------------------------------------

    def generation_task(self, request: ImageGenerationRequest) -> ImageTask:
        """Validate a generation request against the model and settings limits.

        Raises:
            InvalidImageRequestError: ``n`` > ``max_n``, bad ``size``, too many steps, or
                ``max_sequence_length`` above the model's.
        """
        limits = self.engine.limits
        width, height = parse_size(
            request.size,
            default=limits.default_size,
            multiple=limits.size_multiple,
            min_side=limits.min_side,
            max_side=limits.max_side,
        )
        return self._task(request, width, height)

    def edit_task(self, form: ImageEditForm, images: list[bytes], mask: bytes | None) -> ImageTask:
        """Validate an edit: one input image (PNG, JPEG or WebP), an optional mask (OpenAI alpha
        convention), ``size`` defaulting to the image size rounded down to the model's multiple,
        ``guidance_scale`` defaulting to the model's edit default (1.5 where it uses guidance).

        Raises:
            InvalidImageRequestError: missing/extra/undecodable image, bad mask, bad fields.
        """
        if not images:
            raise InvalidImageRequestError(
                "image is required (a multipart file field)", param="image", code="missing_field"
            )
        if len(images) > 1:
            raise InvalidImageRequestError(
                "only one input image is supported by the Z-Image edit pipeline", param="image"
            )
        image = decode_image(images[0], param="image").convert("RGB")
        limits = self.engine.limits
        if form.size in (None, "", "auto"):
            default = tuple(
                min(max(side - side % limits.size_multiple, limits.min_side), limits.max_side)
                for side in image.size
            )
        else:
            default = limits.default_size
        width, height = parse_size(
            form.size,
            default=default,
            multiple=limits.size_multiple,
            min_side=limits.min_side,
            max_side=limits.max_side,
        )
        mask_image = decode_mask(mask, image.size) if mask is not None else None
        if (width, height) != image.size:
            image = image.resize((width, height))
            if mask_image is not None:
                mask_image = mask_image.resize((width, height))
        task = self._task(form, width, height, default_guidance=limits.default_edit_guidance)
        task.image, task.mask, task.strength = image, mask_image, form.strength
        return task

    def _task(
        self, request: Any, width: int, height: int, *, default_guidance: float | None = None
    ) -> ImageTask:
        limits = self.engine.limits
        if request.n > self.settings.max_n:
            raise InvalidImageRequestError(
                f"n must be between 1 and {self.settings.max_n}, got {request.n}", param="n"
            )
        steps = request.num_inference_steps or limits.default_steps
        if steps > self.settings.max_inference_steps:
            raise InvalidImageRequestError(
                f"num_inference_steps must be at most {self.settings.max_inference_steps}",
                param="num_inference_steps",
            )
        if default_guidance is None:
            default_guidance = limits.default_guidance
        guidance = default_guidance if request.guidance_scale is None else request.guidance_scale
        if (request.max_sequence_length or 0) > limits.max_sequence_length:
            raise InvalidImageRequestError(
                f"max_sequence_length must be at most {limits.max_sequence_length}",
                param="max_sequence_length",
            )
        return ImageTask(
            prompt=request.prompt,
            negative_prompt=request.negative_prompt,
            n=request.n,
            width=width,
            height=height,
            num_inference_steps=steps,
            guidance_scale=guidance,
            seed=request.seed if request.seed is not None else secrets.randbits(31),
            cfg_normalization=request.cfg_normalization,
            cfg_truncation=request.cfg_truncation,
            max_sequence_length=request.max_sequence_length,
            safety_check=(
                self.engine.safety_checker is not None
                and request.enable_safety_checker is not False
            ),
        )

    def output_options(self, request: Any, base_url: str) -> OutputOptions:
        """The :class:`OutputOptions` of a request; ``base_url`` is the request's base URL."""
        return OutputOptions(
            response_format=request.response_format,
            output_format=request.output_format,
            output_compression=request.output_compression,
            base_url=base_url.rstrip("/"),
            report_safety=(
                self.engine.safety_checker is not None or request.enable_safety_checker is not None
            ),
        )

    # -- running --------------------------------------------------------------------------------

    async def run(self, task: ImageTask, options: OutputOptions) -> ImagesResponse:
        """Run a task through the engine queue and wait for it.

        Raises:
            QueueFullError: the queue is full (before anything runs).
            ModelLoadError / GenerationError / WorkerDependencyError: the job failed.
        """
        future = self.engine.submit(task)
        generation = await asyncio.wrap_future(future)
        return await asyncio.to_thread(self._respond, task, generation, options)

    def submit_job(
        self, task: ImageTask, options: OutputOptions, webhook_url: str | None
    ) -> ImageJob:
        """Queue a task as an async job and return it (``pending``); the result is stored in the
        registry and the webhook, if any, is called when it finishes.

        Raises:
            QueueFullError: the queue is full (no job is registered).
        """
        job = self.jobs.create(webhook_url)
        try:
            future = self.engine.submit(task, on_start=lambda: self.jobs.mark_running(job.id))
        except WorkerError:
            self.jobs.discard(job.id)
            raise
        background = asyncio.create_task(self._finish_job(job.id, future, task, options))
        self._background.add(background)
        background.add_done_callback(self._background.discard)
        return job

    async def _finish_job(self, job_id: str, future, task: ImageTask, options: OutputOptions):
        try:
            generation = await asyncio.wrap_future(future)
            response = await asyncio.to_thread(self._respond, task, generation, options)
        except asyncio.CancelledError:
            self.jobs.fail(job_id, "the worker shut down before the job finished")
            raise
        except WorkerError as exc:
            job = self.jobs.fail(job_id, str(exc))
        except Exception as exc:  # encoding failures and the like
            logger.exception("async job %s failed", job_id)
            job = self.jobs.fail(job_id, f"{type(exc).__name__}: {exc}")
        else:
            job = self.jobs.complete(job_id, response.model_dump(exclude_none=True))
        if job is not None and job.webhook_url:
            await self.notifier.notify(job.webhook_url, job.to_dict())

    def _respond(
        self, task: ImageTask, generation: Generation, options: OutputOptions
    ) -> ImagesResponse:
        flags = generation.has_nsfw_concepts
        data = []
        for index, image in enumerate(generation.images):
            flagged = None if flags is None else flags[index]
            if flagged:  # withheld: neither bytes nor a url
                data.append(ImageData(revised_prompt=task.prompt, has_nsfw_concepts=True))
                continue
            encoded = encode_image(image, options.output_format, options.output_compression)
            if options.response_format == "url":
                file_id = self.files.put(encoded, options.output_format)
                base = (self.settings.public_base_url or options.base_url).rstrip("/")
                item = ImageData(url=f"{base}/v1/images/files/{file_id}")
            else:
                item = ImageData(b64_json=base64.b64encode(encoded).decode("ascii"))
            item.revised_prompt, item.has_nsfw_concepts = task.prompt, flagged
            data.append(item)
        return ImagesResponse(
            created=int(time.time()),
            data=data,
            output_format=options.output_format,
            size=f"{task.width}x{task.height}",
            seed=task.seed,
            safety_checked=(flags is not None) if options.report_safety else None,
        )

    async def aclose(self) -> None:
        """Cancel pending background job waiters (used at shutdown)."""
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
