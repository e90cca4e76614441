"""Image helpers: ``size`` parsing against the pipeline's limits, encoding (png / jpeg / webp) and
decoding of uploads with Pillow, and the TTL store behind ``url`` responses."""

from __future__ import annotations

import io
import re
import secrets
import threading
import time
from dataclasses import dataclass

from broker.worker.errors import InvalidImageRequestError

__all__ = [
    "INPUT_FORMATS",
    "OUTPUT_FORMATS",
    "FileStore",
    "StoredFile",
    "decode_image",
    "decode_mask",
    "encode_image",
    "parse_size",
]

OUTPUT_FORMATS: dict[str, tuple[str, str]] = {
    "png": ("PNG", "image/png"),
    "jpeg": ("JPEG", "image/jpeg"),
    "webp": ("WEBP", "image/webp"),
}
_SIZE_RE = re.compile(r"^\s*(\d{1,5})\s*[xX×]\s*(\d{1,5})\s*$")


def parse_size(
    size: str | None,
    *,
    default: tuple[int, int],
    multiple: int,
    min_side: int,
    max_side: int,
    param: str = "size",
) -> tuple[int, int]:
    """Parse an OpenAI ``size`` (``"WIDTHxHEIGHT"``, ``"auto"`` or ``None``).

    Args:
        size: the request value; ``None``/``""``/``"auto"`` select ``default``.
        default: ``(width, height)`` in pixels.
        multiple: width and height must be multiples of it (pixels).
        min_side / max_side: inclusive pixel limits for each side.

    Returns:
        ``(width, height)`` in pixels.

    Raises:
        InvalidImageRequestError: malformed, not a multiple, or out of range (``param="size"``).
    """
    if size is None or size.strip() in ("", "auto"):
        return default
    match = _SIZE_RE.match(size)
    if not match:
        raise InvalidImageRequestError(
            f"size must be WIDTHxHEIGHT (e.g. '{default[0]}x{default[1]}') or 'auto', got {size!r}",
            param=param,
        )
    width, height = int(match.group(1)), int(match.group(2))
    for side in (width, height):
        if not min_side <= side <= max_side:
            raise InvalidImageRequestError(
                f"size {width}x{height}: each side must be between {min_side} and "
                f"{max_side} pixels",
                param=param,
            )
        if side % multiple:
            raise InvalidImageRequestError(
                f"size {width}x{height}: width and height must be multiples of {multiple}",
                param=param,
            )
    return width, height


def encode_image(image, output_format: str = "png", compression: int | None = None) -> bytes:
    """Encode a PIL image.

    Args:
        image: a ``PIL.Image.Image`` (RGB).
        output_format: ``"png"``, ``"jpeg"`` or ``"webp"``.
        compression: OpenAI ``output_compression`` 0–100 (jpeg/webp: quality = 100 − compression;
            png: zlib level scaled to 0–9). ``None`` = Pillow defaults (jpeg/webp quality 90).

    Returns:
        The encoded bytes.

    Raises:
        InvalidImageRequestError: unknown format (``param="output_format"``).
    """
    if output_format not in OUTPUT_FORMATS:
        raise InvalidImageRequestError(
            f"output_format must be one of {', '.join(OUTPUT_FORMATS)}, got {output_format!r}",
            param="output_format",
        )
    pil_format, _ = OUTPUT_FORMATS[output_format]
    options: dict[str, int] = {}
    if output_format == "png":
        if compression is not None:
            options["compress_level"] = round(compression * 9 / 100)
    else:
        options["quality"] = 90 if compression is None else max(1, 100 - compression)
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format=pil_format, **options)
    return buffer.getvalue()


#: Upload formats accepted by :func:`decode_image` (Pillow format names): the OpenAI Images API's.
INPUT_FORMATS = ("PNG", "JPEG", "WEBP")


def decode_image(data: bytes, *, param: str = "image"):
    """Decode an uploaded PNG, JPEG or WebP image into a ``PIL.Image.Image``.

    Args:
        data: the uploaded bytes; param: the form field, named in errors.

    Returns:
        The decoded image (its ``format`` is one of :data:`INPUT_FORMATS`).

    Raises:
        InvalidImageRequestError: empty data, another format (a text file, a GIF...) or a
            truncated / corrupt image, or a decompression bomb (``param`` names the form field; the
            message never carries Pillow's internal object reprs).
    """
    from PIL import Image, UnidentifiedImageError

    if not data:
        raise InvalidImageRequestError(f"{param} is empty", param=param)
    try:
        image = Image.open(io.BytesIO(data), formats=INPUT_FORMATS)
    except Image.DecompressionBombError:
        raise InvalidImageRequestError(
            f"{param} has too many pixels", param=param, code="image_too_large"
        ) from None
    except (UnidentifiedImageError, OSError, ValueError):
        raise InvalidImageRequestError(
            f"{param} is not a PNG/JPEG/WebP image", param=param, code="invalid_image"
        ) from None
    try:
        image.load()
    except (OSError, ValueError, SyntaxError):
        raise InvalidImageRequestError(
            f"{param} is a truncated or corrupt {image.format} image",
            param=param,
            code="invalid_image",
        ) from None
    return image


def decode_mask(data: bytes, size: tuple[int, int], *, param: str = "mask"):
    """Decode an edit mask into the diffusers convention (``L`` image, white = repaint).

    OpenAI masks are PNGs whose fully transparent pixels mark the area to edit; a mask without an
    alpha channel is read as grayscale with white = edit.

    Args:
        data: the uploaded bytes; size: ``(width, height)`` of the image it applies to.

    Raises:
        InvalidImageRequestError: undecodable, or its size differs from the image's.
    """

    mask = decode_image(data, param=param)
    if mask.size != size:
        raise InvalidImageRequestError(
            f"mask size {mask.size[0]}x{mask.size[1]} differs from the image size "
            f"{size[0]}x{size[1]}",
            param=param,
        )
    if "A" in mask.getbands():
        return mask.getchannel("A").point(lambda a: 255 if a == 0 else 0)
    return mask.convert("L") if mask.mode != "L" else mask


@dataclass(frozen=True)
class StoredFile:
    """One image kept for a ``url`` response: its bytes, media type and expiry (monotonic s)."""

    data: bytes
    media_type: str
    expires_at: float


class FileStore:
    """In-memory store of generated images served at ``/v1/images/files/{file_id}``.

    Thread-safe. Entries expire ``ttl_seconds`` after :meth:`put`; expired entries are dropped on
    access. ``file_id`` is unguessable (128 random bits) plus the format extension.
    """

    def __init__(self, ttl_seconds: float):
        self._ttl = ttl_seconds
        self._files: dict[str, StoredFile] = {}
        self._lock = threading.Lock()

    def put(self, data: bytes, output_format: str) -> str:
        """Store encoded image bytes; returns the file id (``"<hex>.<ext>"``)."""
        file_id = f"{secrets.token_hex(16)}.{output_format}"
        now = time.monotonic()
        with self._lock:
            self._prune(now)
            self._files[file_id] = StoredFile(
                data, OUTPUT_FORMATS[output_format][1], now + self._ttl
            )
        return file_id

    def get(self, file_id: str) -> StoredFile | None:
        """The stored file, or ``None`` when unknown or expired."""
        now = time.monotonic()
        with self._lock:
            self._prune(now)
            return self._files.get(file_id)

    def __len__(self) -> int:
        with self._lock:
            self._prune(time.monotonic())
            return len(self._files)

    def _prune(self, now: float) -> None:
        for key in [k for k, f in self._files.items() if f.expires_at <= now]:
            del self._files[key]
