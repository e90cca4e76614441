"""HTTP protocol models of the worker (OpenAI Images API shapes plus Z-Image parameters).

Only shapes and per-field validation live here; checks that depend on the loaded model or the
settings (size limits, ``n`` ≤ ``max_n``, step limit) are in :mod:`broker.worker.serving`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator

from broker.wire.n import MAX_N, parse_n, parse_n_field

__all__ = [
    "AsyncImageGenerationRequest",
    "ErrorDetail",
    "ErrorResponse",
    "ImageData",
    "ImageEditForm",
    "ImageGenerationRequest",
    "ImageJobCreated",
    "ImagesResponse",
    "ModelCard",
    "ModelList",
    "UnloadResponse",
    "WorkerStatusResponse",
]


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
    seed: int | None = Field(None, ge=0, le=2**63 - 1, description="Generator seed.")
    num_inference_steps: int | None = Field(None, ge=1, description="Denoising steps.")
    guidance_scale: float | None = Field(None, ge=0, le=50, description="CFG scale (0 = off).")
    negative_prompt: str | None = Field(None, max_length=32_000)
    user: str | None = None


    @field_validator("n", mode="before")
    @classmethod
    def _n_is_an_integer(cls, value: Any) -> int:
        # one rule with the gateway's and serve's billing (broker.wire.n): "2.0" or 2.0 is refused
        return parse_n(value)


class ImageGenerationRequest(_ImageOptions):
    """``POST /v1/images/generations`` body (OpenAI shape; unknown fields such as ``quality`` or
    ``style`` are accepted and ignored)."""


class AsyncImageGenerationRequest(ImageGenerationRequest):
    """``POST /v1/async/images/generations`` body: a generation plus an optional webhook."""

    webhook_url: AnyHttpUrl | None = Field(
        None, description="POSTed the final job body (JSON) when the job completes or fails."
    )


class ImageEditForm(_ImageOptions):
    """Text fields of the multipart ``POST /v1/images/edits`` form (files: ``image``, ``mask``)."""

    strength: float = Field(0.6, ge=0, le=1, description="How much of the image is re-noised.")
    webhook_url: AnyHttpUrl | None = Field(None, description="Async edits only.")

    @field_validator("n", mode="before")
    @classmethod
    def _n_is_an_integer(cls, value: Any) -> int:
        # a form field is text: plain digits only (broker.wire.n)
        return parse_n_field(value)


class ImageData(BaseModel):
    """One image: ``b64_json`` or ``url``."""

    b64_json: str | None = None
    url: str | None = None
    revised_prompt: str | None = None


class ImagesResponse(BaseModel):
    """OpenAI images response, plus the ``seed`` used (same seed + inputs → same pixels)."""

    created: int
    data: list[ImageData]
    output_format: Literal["png", "jpeg", "webp"]
    size: str
    seed: int


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


class WorkerStatusResponse(BaseModel):
    """``GET /v1/internal/status``."""

    state: Literal["idle", "loading", "generating"]
    loaded: bool
    model: str
    device: str
    queue_length: int
    queue_size: int
    running: int
    idle_seconds: float | None
    jobs: int


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
    limits: dict[str, Any] = Field(default_factory=dict, description="Size and step limits.")


class ModelList(BaseModel):
    """``{"object": "list", "data": [...]}`` (the shape SDK 0.9.0 ``getProviderModels`` needs)."""

    object: Literal["list"] = "list"
    data: list[ModelCard]
