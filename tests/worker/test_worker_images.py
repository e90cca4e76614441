"""Size parsing, encoding/decoding and the url file store (Pillow only, no torch)."""

from __future__ import annotations

import io
import time

import pytest

PIL = pytest.importorskip("PIL")
from PIL import Image

from broker.worker.errors import InvalidImageRequestError
from broker.worker.images import (
    FileStore,
    decode_image,
    decode_mask,
    encode_image,
    parse_size,
)

LIMITS = {"default": (64, 64), "multiple": 4, "min_side": 16, "max_side": 512}


@pytest.mark.parametrize(
    ("size", "expected"),
    [(None, (64, 64)), ("auto", (64, 64)), ("128x64", (128, 64)), (" 16X512 ", (16, 512))],
)
def test_parse_size_accepts(size, expected):
    assert parse_size(size, **LIMITS) == expected


@pytest.mark.parametrize("size", ["64", "64x", "x64", "64*64", "-64x64", "abc", "64x64x64"])
def test_parse_size_rejects_malformed(size):
    with pytest.raises(InvalidImageRequestError) as err:
        parse_size(size, **LIMITS)
    assert err.value.param == "size"
    assert "WIDTHxHEIGHT" in str(err.value)


@pytest.mark.parametrize("size", ["8x64", "64x1024", "0x0"])
def test_parse_size_rejects_out_of_range(size):
    with pytest.raises(InvalidImageRequestError, match="between 16 and 512"):
        parse_size(size, **LIMITS)


def test_parse_size_rejects_non_multiple():
    with pytest.raises(InvalidImageRequestError, match="multiples of 4"):
        parse_size("66x64", **LIMITS)


@pytest.mark.parametrize(("fmt", "pil_name"), [("png", "PNG"), ("jpeg", "JPEG"), ("webp", "WEBP")])
def test_encode_roundtrip(fmt, pil_name):
    image = Image.new("RGB", (32, 16), (200, 10, 10))
    data = encode_image(image, fmt, compression=20)
    decoded = decode_image(data)
    assert decoded.format == pil_name
    assert decoded.size == (32, 16)
    r, g, b = decoded.convert("RGB").getpixel((5, 5))
    assert r > 150 and g < 60 and b < 60


def test_encode_rejects_unknown_format():
    with pytest.raises(InvalidImageRequestError) as err:
        encode_image(Image.new("RGB", (4, 4)), "gif")
    assert err.value.param == "output_format"


def test_decode_rejects_garbage_naming_the_field():
    with pytest.raises(InvalidImageRequestError) as err:
        decode_image(b"not an image", param="image")
    assert err.value.param == "image"
    with pytest.raises(InvalidImageRequestError, match="empty"):
        decode_image(b"", param="mask")


def _png(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_mask_alpha_convention():
    mask = Image.new("RGBA", (8, 8), (0, 0, 0, 255))
    mask.putpixel((1, 1), (0, 0, 0, 0))  # transparent = edit
    converted = decode_mask(_png(mask), (8, 8))
    assert converted.mode == "L"
    assert converted.getpixel((1, 1)) == 255
    assert converted.getpixel((0, 0)) == 0


def test_mask_size_must_match():
    with pytest.raises(InvalidImageRequestError) as err:
        decode_mask(_png(Image.new("L", (8, 8))), (16, 16))
    assert err.value.param == "mask"


def test_file_store_ttl():
    store = FileStore(ttl_seconds=0.2)
    file_id = store.put(b"abc", "webp")
    assert file_id.endswith(".webp")
    stored = store.get(file_id)
    assert stored.data == b"abc" and stored.media_type == "image/webp"
    assert store.get("unknown.png") is None
    time.sleep(0.3)
    assert store.get(file_id) is None
    assert len(store) == 0


@pytest.mark.parametrize(
    "data",
    [
        b"a plain text file\n",
        b"GIF89a\x01\x00\x01\x00\x00\x00\x00;",  # Pillow reads GIFs; the API does not take them
        b"BM" + b"\x00" * 60,
    ],
)
def test_decode_accepts_only_png_jpeg_webp_without_reprs(data):
    with pytest.raises(InvalidImageRequestError) as err:
        decode_image(data, param="image")
    assert str(err.value) == "image is not a PNG/JPEG/WebP image"
    assert err.value.code == "invalid_image"


@pytest.mark.parametrize(("fmt", "pil_name"), [("png", "PNG"), ("jpeg", "JPEG"), ("webp", "WEBP")])
def test_decode_accepts_the_three_formats(fmt, pil_name):
    assert decode_image(encode_image(Image.new("RGB", (8, 8)), fmt)).format == pil_name


def test_decode_names_a_truncated_image():
    data = encode_image(Image.effect_noise((64, 64), 50).convert("RGB"), "png")
    with pytest.raises(InvalidImageRequestError, match="truncated or corrupt PNG image"):
        decode_image(data[: len(data) // 2])
