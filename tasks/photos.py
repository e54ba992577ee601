"""Validation of uploaded laundry photos, before anything is stored.

Pillow is the one library the web process uses to look inside images; the photo is
decoded in full once (at reduced scale for JPEG) so a truncated or corrupt file is
refused at the door instead of failing later in the AI worker.
"""

from __future__ import annotations

import hashlib
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
    digest = hashlib.sha256()
    upload.seek(0)
    for chunk in upload.chunks():
        digest.update(chunk)
    upload.seek(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(upload) as image:
                if image.format not in ACCEPTED_FORMATS:
                    raise PhotoRejected(
                        f"The photo is a {image.format} image; JPEG, PNG or WebP is accepted.",
                        code="photo_format",
                    )
                width, height = image.size
                pixels = width * height
                if pixels > settings.PHOTO_MAX_PIXELS:
                    raise PhotoRejected(
                        f"The photo is {width}x{height} pixels; at most "
                        f"{settings.PHOTO_MAX_PIXELS / 1_000_000:.0f} megapixels are accepted.",
                        code="photo_too_many_pixels",
                    )
                image_format = image.format
                if image_format == "JPEG":
                    image.draft("RGB", (max(1, width // 8), max(1, height // 8)))
                image.load()  # decodes everything: a truncated or corrupt file fails here
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
    finally:
        upload.seek(0)
    content_type, extension = ACCEPTED_FORMATS[image_format]
    return CheckedPhoto(content_type, extension, width, height, digest.hexdigest(), upload.size)
