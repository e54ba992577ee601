"""tasks.photos: the checks that refuse a truncated or corrupt photo without decoding it."""

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from tasks.photos import PhotoRejected, check_photo
from tests import factories


def check(data: bytes):
    return check_photo(SimpleUploadedFile("photo", data))


def jpeg(**options) -> bytes:
    buffer = io.BytesIO()
    Image.linear_gradient("L").convert("RGB").resize((320, 240)).save(buffer, "JPEG", **options)
    return buffer.getvalue()


@pytest.mark.parametrize("data", [
    jpeg(), jpeg(progressive=True), jpeg(optimize=True, subsampling=0), jpeg(restart_marker_blocks=4),
    jpeg() + b"trailing bytes after the end-of-image marker",
    factories.noisy_jpeg(50_000), factories.photo_bytes("PNG"), factories.photo_bytes("WEBP"),
], ids=["baseline", "progressive", "optimized-444", "restart-markers", "trailing-data", "noisy", "png", "webp"])
def test_whole_photos_are_accepted(data):
    assert check(data).size == len(data)


def _corrupt_huffman_table(data: bytes) -> bytes:
    dht = data.index(b"\xff\xc4")
    return data[:dht + 5] + b"\xff" + data[dht + 6:]  # the count of 1-bit codes: more than fit


def _corrupt_scan_header(data: bytes) -> bytes:
    sos = data.index(b"\xff\xda")
    return data[:sos + 5] + b"\x09" + data[sos + 6:]  # a component the frame does not have


def _corrupt_png_chunk(data: bytes) -> bytes:
    idat = data.index(b"IDAT")
    return data[:idat + 10] + bytes([data[idat + 10] ^ 0xFF]) + data[idat + 11:]


@pytest.mark.parametrize("data, why", [
    (jpeg()[:-2], "before the end-of-image marker"),
    (jpeg()[:len(jpeg()) // 2], "before the end-of-image marker"),
    (jpeg(progressive=True)[:-300], "before the end-of-image marker"),
    (jpeg()[:400], ""),
    (_corrupt_huffman_table(jpeg()), "broken Huffman table"),
    (_corrupt_scan_header(jpeg()), "broken scan header"),
    (factories.photo_bytes("PNG")[:-20], ""),
    (_corrupt_png_chunk(factories.photo_bytes("PNG")), ""),
    (factories.photo_bytes("WEBP")[:-10], ""),
], ids=["jpeg-without-eoi", "jpeg-half", "progressive-truncated", "jpeg-in-its-header", "jpeg-huffman-table",
        "jpeg-scan-header", "png-truncated", "png-bad-crc", "webp-truncated"])
def test_truncated_or_corrupt_photos_are_refused(data, why):
    with pytest.raises(PhotoRejected) as refused:
        check(data)

    assert refused.value.code == "photo_corrupt"
    assert "corrupt or truncated" in str(refused.value) and why in str(refused.value)
