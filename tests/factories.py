"""Small builders of domain rows and photos for tests."""

from __future__ import annotations

import hashlib
import io
import itertools
import struct
import zlib

from django.contrib.auth import get_user_model
from PIL import Image
from rest_framework.test import APIClient

from accounts.services import token_issue
from branches.models import Branch, Helper

_counter = itertools.count(1)


def user(username: str | None = None, *, staff: bool = False, superuser: bool = False):
    username = username or f"user{next(_counter)}"
    return get_user_model().objects.create_user(
        username=username, password=f"{username}-pass", is_staff=staff or superuser, is_superuser=superuser
    )


def branch(code: str | None = None, *, owner=None) -> Branch:
    code = code or f"branch-{next(_counter)}"
    return Branch.objects.create(code=code, name=f"Branch {code}", owner=owner or user(staff=True))


def helper(at: Branch | None = None, username: str | None = None):
    helper_user = user(username)
    Helper.objects.create(user=helper_user, branch=at or branch())
    return helper_user


def api_token(some_user) -> str:
    """A new API token of the user, as the app gets it at sign-in."""
    return token_issue(user=some_user).key


def api_client_for(some_user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_token(some_user)}")
    return client


def photo_bytes(fmt: str = "JPEG", size: tuple[int, int] = (640, 480), colour=(40, 90, 160)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format=fmt)
    return buffer.getvalue()


def noisy_jpeg(target_bytes: int = 200_000, seed: int = 1) -> bytes:
    """A JPEG of about `target_bytes` (noise compresses badly, like a real photo)."""
    import random

    rng = random.Random(seed)
    side = 200
    while True:
        image = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        if buffer.tell() >= target_bytes:
            return buffer.getvalue()
        side = int(side * 1.2)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares `width` x `height` pixels in a few bytes: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = chunk(b"IDAT", zlib.compress(b"\0" * 64))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + pixels + chunk(b"IEND", b"")


def analyzed_task(
    *, at: Branch | None = None, labels: dict | None = None, model_version: str = "v1", photo: bytes | None = None
):
    """A task of `at` (a new branch by default) that the AI has read, with its photo in storage."""
    from django.core.files.base import ContentFile

    from tasks.models import LaundryTask
    from tasks.services import reading_record

    branch_ = at or branch()
    helper_user = helper(branch_)
    data = photo or photo_bytes()
    task = LaundryTask(
        branch=branch_, helper=helper_user, photo_sha256=hashlib.sha256(data).hexdigest(),
        photo_size=len(data), photo_content_type="image/jpeg",
    )
    task.photo.save("photo.jpg", ContentFile(data), save=False)
    task.save()
    labels = labels or {"garment": "shirt", "condition": "stained"}
    reading_record(
        task_id=task.pk, labels=labels, confidences={head: 0.9 for head in labels},
        model_version=model_version, inference_ms=3.0,
    )
    task.refresh_from_db()
    return task
