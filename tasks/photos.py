"""Validation of uploaded laundry photos, before anything is stored.

Pillow is the one library the web process uses to look inside images. Each photo is
checked at the cost its format needs to refuse a truncated or corrupt file at the door
rather than fail later in the AI worker, without decoding its pixels where the format
allows it (a decode of a 200 KB JPEG costs more CPU than the rest of the upload):

* JPEG: the marker segments and scans are walked to the end-of-image marker: a file that
  ends early, or whose segment lengths or markers are wrong, is refused;
* PNG: every chunk's CRC is checked up to IEND (Pillow's `verify()`);
* WebP, rare from phones and without checksums: decoded in full.
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from dataclasses import dataclass

from django.conf import settings
from PIL import Image, UnidentifiedImageError

# Pillow format name -> (content type, file extension)
ACCEPTED_FORMATS = {"JPEG": ("image/jpeg", "jpg"), "PNG": ("image/png", "png"), "WEBP": ("image/webp", "webp")}


class PhotoRejected(ValueError):
    """The upload is not an acceptable photo; the message says why, for the client."""

    def __init__(self, message: str, *, code: str):
        super().__init__(message)
        self.code = code


class PhotoTooLarge(PhotoRejected):
    pass


@dataclass(frozen=True)
class CheckedPhoto:
    content_type: str
    extension: str
    width: int
    height: int
    sha256: str
    size: int


def max_photo_bytes() -> int:
    return settings.PHOTO_MAX_BYTES


def check_photo(upload) -> CheckedPhoto:
    """Check an uploaded file is a JPEG, PNG or WebP photo we can read; raise PhotoRejected."""
    limit = max_photo_bytes()
    if upload.size > limit:
        raise PhotoTooLarge(
            f"The photo is {upload.size / 1_000_000:.1f} MB; at most {limit / 1_000_000:.0f} MB is accepted.",
            code="photo_too_large",
        )
    if upload.size == 0:
        raise PhotoRejected("The photo is an empty file.", code="photo_empty")
    upload.seek(0)
    data = upload.read()  # at most PHOTO_MAX_BYTES
    upload.seek(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                image_format = image.format
                if image_format not in ACCEPTED_FORMATS:
                    raise PhotoRejected(
                        f"The photo is a {image_format} image; JPEG, PNG or WebP is accepted.",
                        code="photo_format",
                    )
                width, height = image.size
                if width * height > settings.PHOTO_MAX_PIXELS:
                    raise PhotoRejected(
                        f"The photo is {width}x{height} pixels; at most "
                        f"{settings.PHOTO_MAX_PIXELS / 1_000_000:.0f} megapixels are accepted.",
                        code="photo_too_many_pixels",
                    )
                if image_format == "JPEG":
                    check_jpeg_complete(data)
                elif image_format == "PNG":
                    image.verify()  # every chunk's CRC, up to IEND
                else:
                    image.load()
    except PhotoRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PhotoRejected(
            f"The photo is too large to decode safely (a decompression bomb?): {exc}", code="photo_too_many_pixels"
        ) from exc
    except UnidentifiedImageError as exc:
        raise PhotoRejected("The file is not a JPEG, PNG or WebP image.", code="photo_not_an_image") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise PhotoRejected(f"The image is corrupt or truncated: {exc}", code="photo_corrupt") from exc
    content_type, extension = ACCEPTED_FORMATS[image_format]
    return CheckedPhoto(content_type, extension, width, height, hashlib.sha256(data).hexdigest(), len(data))


# In a scan's entropy-coded data, 0xFF is followed by 0x00 (a stuffed byte), a restart
# marker (0xD0-0xD7) or more 0xFF (fill); anything else is the marker that ends the scan.
_END_OF_SCAN = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")
_STANDALONE_MARKERS = {0x01, *range(0xD0, 0xD8)}  # TEM and RSTn: no length field
_START_OF_FRAME = {*range(0xC0, 0xD0)} - {0xC4, 0xC8, 0xCC}  # SOF0-SOF15 (not DHT, JPG, DAC)
_DHT, _DQT, _EOI, _SOS = 0xC4, 0xDB, 0xD9, 0xDA


def check_jpeg_complete(data: bytes) -> None:
    """Walk a JPEG from its SOI through every marker segment and scan to its EOI marker.

    Raises OSError when the file ends before its EOI (truncated), or a marker, a segment
    length or a frame or scan header is wrong (corrupt). No pixel is decoded: a bit error
    inside a scan's data is not seen here (nor, mostly, by a decoder, which draws it as a
    wrong block).
    """
    end = len(data)
    if data[:2] != b"\xff\xd8":
        raise OSError("no JPEG start-of-image marker")
    components: set[int] = set()
    pos = 2
    while True:
        if pos >= end:
            raise OSError(f"the file ends after {end} bytes, before the end-of-image marker")
        if data[pos] != 0xFF:
            raise OSError(f"no marker at byte {pos}")
        while pos < end and data[pos] == 0xFF:  # a marker may follow fill bytes
            pos += 1
        if pos >= end:
            continue  # reported above
        marker = data[pos]
        pos += 1
        if marker == _EOI:
            return
        if marker in _STANDALONE_MARKERS:
            continue
        if marker == 0x00:
            raise OSError(f"no marker at byte {pos - 2}")
        if pos + 2 > end:
            continue  # truncated: reported above
        length = int.from_bytes(data[pos:pos + 2], "big")
        segment = data[pos + 2:pos + length]
        if length < 2 or len(segment) < length - 2:
            if len(segment) < length - 2:
                pos = end
                continue  # truncated: reported above
            raise OSError(f"a marker segment of length {length} at byte {pos}")
        pos += length
        if marker == _DHT:
            _check_huffman_tables(segment)
        elif marker == _DQT:
            _check_quantization_tables(segment)
        elif marker in _START_OF_FRAME:
            count = segment[5] if len(segment) > 5 else 0
            if count == 0 or len(segment) != 6 + 3 * count:
                raise OSError("a broken frame header")
            components = set(segment[6::3])
        elif marker == _SOS:
            count = segment[0] if segment else 0
            selectors = segment[1:1 + 2 * count]
            if not 1 <= count <= 4 or len(segment) != 4 + 2 * count or not set(selectors[::2]) <= components or any(
                tables >> 4 > 3 or tables & 15 > 3 for tables in selectors[1::2]
            ):
                raise OSError("a broken scan header")
            scan_end = _END_OF_SCAN.search(data, pos)
            pos = scan_end.start() if scan_end else end


def _check_huffman_tables(segment: bytes) -> None:
    """A DHT segment: each table's class and id, its code counts and symbols, and codes that fit (as libjpeg checks)."""
    pos = 0
    while pos < len(segment):
        kind, counts = segment[pos], segment[pos + 1:pos + 17]
        symbols = segment[pos + 17:pos + 17 + sum(counts)]
        if kind >> 4 > 1 or kind & 15 > 3 or len(counts) < 16 or len(symbols) < sum(counts) or sum(counts) > 256:
            raise OSError("a broken Huffman table")
        code = 0
        for length, count in enumerate(counts, start=1):
            code += count
            if code >= 1 << length:
                raise OSError("a broken Huffman table")
            code <<= 1
        if kind >> 4 == 0 and any(symbol > 15 for symbol in symbols):  # a DC table codes bit counts
            raise OSError("a broken Huffman table")
        pos += 17 + len(symbols)


def _check_quantization_tables(segment: bytes) -> None:
    """A DQT segment: each table's precision and id, and its 64 entries."""
    pos = 0
    while pos < len(segment):
        kind = segment[pos]
        if kind >> 4 > 1 or kind & 15 > 3:
            raise OSError("a broken quantization table")
        pos += 1 + 64 * (1 + (kind >> 4))
    if pos != len(segment):
        raise OSError("a broken quantization table")
