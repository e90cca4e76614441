"""HTTP protocol models of the worker (OpenAI Images API shapes plus Z-Image parameters).

Only shapes and per-field validation live here; checks that depend on the loaded model or the
settings (size limits, ``n`` ≤ ``max_n``, step limit) are in :mod:`broker.worker.serving`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator

from broker.wire.n import MAX_N, parse_n, parse_n_field

__all__ = [
    "CAPABILITIES",
    "AsyncImageGenerationRequest",
    "ErrorDetail",
    "ErrorResponse",
    "HealthResponse",
    "ImageData",
    "ImageEditForm",
    "ImageGenerationRequest",
    "ImageJobCreated",
    "ImagesResponse",
    "ModelCard",
    "ModelList",
    "PerformanceStatus",
    "UnloadResponse",
    "WorkerStatusResponse",
]

#: Capabilities listed by ``GET /v1/models`` (seed 003, "Capabilities").
CAPABILITIES = ("text-to-image", "image-to-image")


class _ImageOptions(BaseModel):
    """Fields shared by generations and edits."""

    model_config = ConfigDict(extra="ignore")

    prompt: str = Field(..., min_length=1, max_length=32_000, description="Text prompt.")
    model: str | None = Field(None, description="Model name; informational (one model per worker).")
    n: int = Field(1, ge=1, le=MAX_N, description="Images to generate (1 to max_n, default 4).")
    size: str | None = Field(None, description="WIDTHxHEIGHT in pixels, or 'auto'.")
    response_format: Literal["b64_json", "url"] = Field("b64_json")
    output_format: Literal["png", "jpeg", "webp"] = Field("png")
    output_compression: int | None = Field(None, ge=0, le=100)
    seed: int | None = Field(
        None,
        ge=0,
        le=2**63 - 1,
        description="Generator seed of the first image; image i is seeded seed + i (the image a "
        "request with that seed and n = 1 gives).",
    )
    num_inference_steps: int | None = Field(None, ge=1, description="Denoising steps.")
    guidance_scale: float | None = Field(None, ge=0, le=50, description="CFG scale (0 = off).")
    cfg_normalization: bool = Field(
        False,
        description="Renormalise the guided prediction to the conditional one's norm (diffusers "
        "ZImagePipeline; acts when guidance_scale > 1). False for standard generation.",
    )
    cfg_truncation: float = Field(
        1.0,
        ge=0,
        le=1,
        description="Guidance is switched off once the normalised time (1 - t/1000) exceeds it "
        "(diffusers ZImagePipeline; 1.0 = guidance on every step).",
    )
    max_sequence_length: int | None = Field(
        None, ge=1, description="Most prompt tokens given to the text encoder (<= the model's)."
    )
    negative_prompt: str | None = Field(None, max_length=32_000)
    enable_safety_checker: bool | None = Field(
        None,
        description="Run the worker's safety checker (default: when the worker has one). Without "
        "one, the answer says no check ran (safety_checked false).",
    )
    user: str | None = None

    @field_validator("n", mode="before")
    @classmethod
    def _n_is_an_integer(cls, value: Any) -> int:
        # one rule with the gateway's and serve's billing (broker.wire.n): "2.0" or 2.0 is refused
        return parse_n(value)


class ImageGenerationRequest(_ImageOptions):
    """``POST /v1/images/generations`` body: the OpenAI shape plus the Z-Image Vision server's
    generation parameters (seed 003: ``negative_prompt``, ``num_inference_steps``,
    ``guidance_scale``, ``cfg_normalization``) and diffusers' ``cfg_truncation`` /
    ``max_sequence_length``. Like the OpenAI API and that server, unknown fields (``quality``,
    ``style``...) are accepted and ignored; known fields with bad values are refused (400)."""


class AsyncImageGenerationRequest(ImageGenerationRequest):
    """``POST /v1/async/images/generations`` body: a generation plus an optional webhook."""

    webhook_url: AnyHttpUrl | None = Field(
        None, description="POSTed the final job body (JSON) when the job completes or fails."
    )


class ImageEditForm(_ImageOptions):
    """Text fields of the multipart ``POST /v1/images/edits`` form (files: ``image``, ``mask``).

    Defaults of the Z-Image Vision server (seed 003, "Edit Image"): ``response_format`` ``url``,
    ``size`` the input image's, ``guidance_scale`` 1.5 where the model uses guidance (see
    :attr:`broker.worker.pipelines.ModelLimits.default_edit_guidance`)."""

    response_format: Literal["b64_json", "url"] = Field("url")
    strength: float = Field(0.6, ge=0, le=1, description="How much of the image is re-noised.")
    webhook_url: AnyHttpUrl | None = Field(None, description="Async edits only.")

    @field_validator("n", mode="before")
    @classmethod
    def _n_is_an_integer(cls, value: Any) -> int:
        # a form field is text: plain digits only (broker.wire.n)
        return parse_n_field(value)


class ImageData(BaseModel):
    """One image: ``b64_json`` or ``url``; neither when the safety checker flagged it (withheld)."""

    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = Field(None, description="The prompt the image was made from.")
    has_nsfw_concepts: bool | None = Field(
        None, description="The safety checker's verdict (true = withheld); absent when unchecked."
    )


class ImagesResponse(BaseModel):
    """OpenAI images response, plus the ``seed`` used (same seed + inputs → same pixels) and
    ``safety_checked``: whether a safety checker looked at the images (present when the worker has
    one or the request set ``enable_safety_checker``; never true unless a check ran)."""

    created: int
    data: list[ImageData]
    output_format: Literal["png", "jpeg", "webp"]
    size: str
    seed: int
    safety_checked: bool | None = None


class ImageJobCreated(BaseModel):
    """202 body of the async routes (``jobId`` mirrors ``id`` for the 0G SDK)."""

    id: str
    jobId: str
    object: Literal["image.generation.job"] = "image.generation.job"
    status: Literal["pending", "running", "completed", "failed"]
    created: int


class ErrorDetail(BaseModel):
    """OpenAI error object."""

    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """``{"error": {...}}``."""

    error: ErrorDetail


class PerformanceStatus(BaseModel):
    """The speed settings in effect on the loaded model (``ZG_WORKER_ATTENTION_BACKEND``...):
    ``notes`` says, one line each, which requested setting is off and why (no CUDA, kernel
    package not installed...)."""

    attention_backend: str = Field(description="diffusers attention backend (native = SDPA).")
    compile: str | None = Field(description="torch.compile mode in use, or null (off).")
    cuda_graphs: bool
    batch_n: bool = Field(description="The n images of a request are made in one call.")
    notes: list[str]


class WorkerStatusResponse(BaseModel):
    """``GET /v1/internal/status`` (seed 003: ``{"status": "generating"}`` while busy).

    ``status``: what the engine does now; ``loaded``: whether the model is in memory;
    ``load_error``: why the last load failed (cleared by a successful load), else ``None``."""

    status: Literal["idle", "loading", "generating"]
    loaded: bool
    load_error: str | None = None
    model: str
    device: str
    queue_length: int
    queue_size: int
    running: int
    idle_seconds: float | None
    jobs: int
    performance: PerformanceStatus | None = Field(
        None, description="Speed settings in effect; null until the model is loaded."
    )


class HealthResponse(BaseModel):
    """``GET /health``: liveness plus whether the model is loaded (seed 003, "Health Check");
    never loads the model."""

    status: Literal["ok"] = "ok"
    model_loaded: bool
    model: str
    state: Literal["idle", "loading", "generating"]
    load_error: str | None = None
    safety_checker: str | None = Field(None, description="The configured safety checker, if any.")
    performance: PerformanceStatus | None = Field(
        None, description="Speed settings in effect; null until the model is loaded."
    )


class UnloadResponse(BaseModel):
    """``/v1/internal/unload``: whether a model was unloaded, and the status afterwards."""

    unloaded: bool
    status: WorkerStatusResponse


class ModelCard(BaseModel):
    """One entry of ``GET /v1/models``."""

    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "0g-broker"
    type: str = "text-to-image"
    capabilities: list[str] = Field(
        default_factory=lambda: list(CAPABILITIES), description="What the model can do."
    )
    limits: dict[str, Any] = Field(default_factory=dict, description="Size and step limits.")


class ModelList(BaseModel):
    """``{"object": "list", "data": [...]}`` (the shape SDK 0.9.0 ``getProviderModels`` needs)."""

    object: Literal["list"] = "list"
    data: list[ModelCard]
