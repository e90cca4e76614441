"""Pixazo's Z-Image request and status shapes (seed ``004``), as pydantic models. No logic here
beyond per-field ranges.

``image_size`` presets map to these pixel sizes (width × height) at ``long_side`` = 1024 (Z-Image's
native size; ``ServeSettings.pixazo_long_side`` scales them, sides rounded down to multiples of 16):

================ ===========
``square_1_1``   1024 × 1024
``portrait_3_4``  768 × 1024
``landscape_4_3`` 1024 × 768
``portrait_9_16``  576 × 1024
``landscape_16_9`` 1024 × 576
================ ===========

Fields forwarded to the provider's image API: ``prompt``; ``num_images`` → ``n``; ``image_size`` →
``size``; ``num_inference_steps``; ``guidance_scale``; ``output_format``; ``seed`` and
``negative_prompt`` (accepted here too, as on the OpenAI routes); ``enable_safety_checker`` (passed
through; the status reports whether a check ran). ``acceleration`` is accepted and not forwarded
(no equivalent: Z-Image runs at one speed).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "IMAGE_SIZES",
    "MAX_SEED",
    "PixazoBaseRequest",
    "PixazoOutput",
    "PixazoStatus",
    "PixazoStatusResponse",
    "PixazoSubmitResponse",
    "PixazoTurboRequest",
    "image_size_pixels",
]

ImageSize = Literal[
    "square_1_1", "portrait_3_4", "landscape_4_3", "portrait_9_16", "landscape_16_9"
]
PixazoStatus = Literal["QUEUED", "PROCESSING", "COMPLETED", "FAILED", "ERROR"]

#: ``image_size`` → (width, height) ratio terms.
IMAGE_SIZES: dict[str, tuple[int, int]] = {
    "square_1_1": (1, 1),
    "portrait_3_4": (3, 4),
    "landscape_4_3": (4, 3),
    "portrait_9_16": (9, 16),
    "landscape_16_9": (16, 9),
}


def image_size_pixels(image_size: str, long_side: int = 1024) -> tuple[int, int]:
    """The ``(width, height)`` in pixels of a preset: the long side is ``long_side``, the short
    side keeps the ratio; both rounded down to multiples of 16 (at least 16).

    Raises:
        KeyError: an unknown preset (the request model refuses those first).
    """
    w, h = IMAGE_SIZES[image_size]
    scale = long_side / max(w, h)
    return tuple(max(16, int(side * scale) // 16 * 16) for side in (w, h))  # type: ignore[return-value]


#: The largest ``seed`` forwarded: a gateway decodes JSON numbers as float64, which holds every
#: integer up to 2**53 exactly (:mod:`broker.wire.forwarded_request`).
MAX_SEED = 2**53


class _Request(BaseModel):
    """Fields common to Turbo and Base (unknown fields are ignored, as Pixazo does). Types are
    strict, as JSON gives them: a count is an integer (not ``2.0``, ``"2"`` or ``true``: the
    shared ``n`` rule of :mod:`broker.wire.n`), a flag a boolean, a number not a string."""

    model_config = ConfigDict(extra="ignore", strict=True)

    prompt: str = Field(min_length=1, max_length=32_000)
    image_size: ImageSize
    guidance_scale: float | None = Field(None, ge=1, le=20)
    num_images: int = Field(1, ge=1, le=4)
    enable_safety_checker: bool = True
    output_format: Literal["png", "jpeg", "webp"] = "png"
    seed: int | None = Field(None, ge=0, le=MAX_SEED)
    negative_prompt: str | None = Field(None, max_length=32_000)


class PixazoTurboRequest(_Request):
    """``POST /z-image-turbo-834/v1/z-image-turbo-request`` (steps 1–50, acceleration ``none``)."""

    num_inference_steps: int | None = Field(None, ge=1, le=50)
    acceleration: Literal["none"] = "none"


class PixazoBaseRequest(_Request):
    """``POST /z-image-base/v1/z-image-base-request`` (steps 10–100, default 28; guidance default
    4; acceleration ``regular`` / ``fast`` / ``ultra_fast``)."""

    num_inference_steps: int = Field(28, ge=10, le=100)
    guidance_scale: float | None = Field(4.0, ge=1, le=20)
    acceleration: Literal["regular", "fast", "ultra_fast"] = "regular"


class PixazoSubmitResponse(BaseModel):
    """202 answer of a submission."""

    request_id: str
    status: PixazoStatus = "QUEUED"
    polling_url: str


class PixazoOutput(BaseModel):
    """``output`` of a completed request: the image URLs (served by ``serve``) and their MIME type;
    ``has_nsfw_concepts`` only when the provider reported a safety check."""

    media_url: list[str]
    media_type: str
    has_nsfw_concepts: list[bool] | None = None


class PixazoStatusResponse(BaseModel):
    """``GET /v2/requests/status/{request_id}`` (and the webhook body). ``safety_checker`` says
    whether a requested safety check ran (never pretended)."""

    request_id: str
    status: PixazoStatus
    model_id: str
    error: str | None = None
    output: PixazoOutput | None = None
    created_at: str
    updated_at: str
    completed_at: str | None = None
    safety_checker: dict[str, Any] | None = None
