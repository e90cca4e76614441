"""Errors of the Z-Image worker (``broker.worker``).

Every class derives from :class:`broker._exceptions.ProviderError` (the provider-side category);
request-validation errors are also :class:`broker._exceptions.InputError` (a ``ValueError``).
"""

from __future__ import annotations

from broker._exceptions import InputError, ProviderError

__all__ = [
    "GenerationError",
    "InvalidImageRequestError",
    "JobNotFoundError",
    "ModelLoadError",
    "QueueFullError",
    "WorkerDependencyError",
    "WorkerError",
]


class WorkerError(ProviderError):
    """Base class of every error raised by the Z-Image worker."""


class WorkerDependencyError(WorkerError):
    """torch / diffusers / transformers / Pillow (the ``[worker]`` extra) are not importable."""


class ModelLoadError(WorkerError):
    """The pipeline could not be loaded (unknown Hub id, missing files offline, bad directory)."""


class InvalidImageRequestError(WorkerError, InputError):
    """A request field is invalid. Answered with HTTP 400 and the OpenAI error shape.

    Attributes:
        param: the offending field name (``"size"``, ``"n"``, ``"image"``...) or ``None``.
        code: a short machine-readable code (``"invalid_value"``, ``"missing_field"``...).
    """

    def __init__(self, message: str, *, param: str | None = None, code: str = "invalid_value"):
        super().__init__(message)
        self.param = param
        self.code = code


class QueueFullError(WorkerError):
    """The bounded job queue is full. Answered with HTTP 429 and ``Retry-After``.

    Attributes:
        retry_after: suggested wait in whole seconds (>= 1).
    """

    def __init__(self, message: str, *, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class JobNotFoundError(WorkerError):
    """No async job (or served image file) with this id exists (or it expired). HTTP 404."""


class GenerationError(WorkerError):
    """The pipeline raised while generating; the message is the pipeline's error text."""
