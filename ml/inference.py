"""Reading laundry photos with the active model version (the AI workers' side).

This is the one module of the request path that imports torch, so only the processes that
read photos (the `worker-ai` pool) load it; ml.models, ml.selectors, ml.services and
ml.labels stay torch-free for the web process.

    from ml.inference import active_reader, decode_photo

    prediction = active_reader().read(decode_photo(data))
    prediction.labels        # {"garment": "shirt", "condition": "stained"}
    prediction.confidences   # {"garment": 0.97, "condition": 0.88}
    prediction.model_version # "v3"

`active_reader()` loads the active version once per process, on first use. Afterwards it
asks the database which version is active at most every ML_RELOAD_CHECK_SECONDS (one
indexed single-column query) and, when another version has been activated, loads that one
and swaps it in: activating a version in the admin or with train_model reaches every
worker within seconds, without a restart.

Batches: the AI worker runs its messages in threads, and each handler hands its decoded
photo to the process's one batcher (`read_in_batch`, ml.batching): up to ML_BATCH_MAX photos
go through one forward pass, gathered for at most ML_BATCH_WAIT_MS after the first. The
batcher asks `active_reader()` before every pass, so a new version takes over between
batches, and every prediction names the version that made it.

Threads: torch uses TORCH_NUM_THREADS intra-op threads when it is set (the AI pool runs
several single-threaded processes on two cores), else one per CPU.
"""

from __future__ import annotations

import io
import logging
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from django.conf import settings
from django.db import close_old_connections
from PIL import Image, ImageOps, UnidentifiedImageError

from ml.batching import Batcher
from ml.errors import ModelUnavailable, NoActiveModel, UndecodablePhoto
from ml.models import ModelVersion
from ml.nets import build_model, configure_threads, state_dict_from_bytes
from ml.preprocess import to_batch
from ml.selectors import model_version_active_name, model_version_get
from observability import metrics

logger = logging.getLogger(__name__)

# A JPEG is decoded at a reduced scale (1/2, 1/4, 1/8) that still has at least this many
# pixels per side: a 12-megapixel phone photo decodes several times faster, and the
# model sees 96 pixels anyway.
DECODE_MIN_SIDE = 512


@dataclass
class Prediction:
    """What the model read from one photo."""

    labels: dict[str, str]  # head -> the most probable label, e.g. {"garment": "shirt", ...}
    confidences: dict[str, float]  # head -> that label's probability, in [0, 1]
    model_version: str  # e.g. "v3"
    inference_ms: float  # preprocessing + forward pass; for a batch, the batch's time per photo


class Reader:
    """One loaded model version, ready to read photos (eval mode, no autograd)."""

    def __init__(self, model_version: ModelVersion):
        configure_threads()
        self.model_version = model_version
        self.version: str = model_version.version
        self.image_size: int = model_version.image_size
        # the label spaces the heads were trained on, not today's LABEL_SPACES
        self.label_spaces: dict[str, tuple[str, ...]] = {
            head: tuple(labels) for head, labels in model_version.label_spaces.items()
        }
        try:
            with model_version.artifact.open("rb") as artifact:
                state_dict = state_dict_from_bytes(artifact.read())
            model = build_model(self.label_spaces, architecture=model_version.architecture)
            model.load_state_dict(state_dict)
        except Exception as exc:
            raise ModelUnavailable(
                f"Model {self.version} cannot be loaded from {model_version.artifact.name!r}: {exc}"
            ) from exc
        self._model = model.eval()

    def __repr__(self) -> str:
        return f"<Reader {self.version} {self.image_size}px {sorted(self.label_spaces)}>"

    def read(self, image: Image.Image) -> Prediction:
        """Read one photo."""
        return self.read_batch([image])[0]

    def read_batch(self, images: Sequence[Image.Image]) -> list[Prediction]:
        """Read several photos in one forward pass (faster per photo than one at a time)."""
        if not images:
            return []
        started = time.perf_counter()
        batch = to_batch(images, self.image_size)
        with torch.inference_mode():
            logits = self._model(batch)
            best = {head: logits[head].softmax(dim=1).max(dim=1) for head in self.label_spaces}
        per_photo_ms = (time.perf_counter() - started) * 1000 / len(images)
        predictions = []
        for index in range(len(images)):
            labels, confidences = {}, {}
            for head, known in self.label_spaces.items():
                labels[head] = known[int(best[head].indices[index])]
                confidences[head] = round(float(best[head].values[index]), 4)
            predictions.append(Prediction(labels, confidences, self.version, round(per_photo_ms, 3)))
        return predictions


_lock = threading.Lock()
_reader: Reader | None = None
_checked_at = float("-inf")


def active_reader() -> Reader:
    """The Reader of the active model version; one per process, reloaded when another is activated.

    Raises NoActiveModel when no version is active, ModelUnavailable when the active
    version's weights cannot be loaded (a failed hot reload keeps the previous version
    reading and tries again at the next check).
    """
    global _reader, _checked_at
    with _lock:
        now = time.monotonic()
        if _reader is not None and now - _checked_at < reload_check_seconds():
            return _reader
        name = model_version_active_name()
        _checked_at = now
        if name is None:
            _reader = None
            raise NoActiveModel("No model version is active: train one with `python manage.py train_model`.")
        if _reader is None or _reader.version != name:
            _reader = _load(name, current=_reader)
        return _reader


def reset_active_reader() -> None:
    """Forget the loaded model; the next active_reader() loads the active version afresh."""
    global _reader, _checked_at
    with _lock:
        _reader = None
        _checked_at = float("-inf")


_batcher_lock = threading.Lock()
_batcher: Batcher | None = None


def read_in_batch(image: Image.Image, *, timeout: float) -> Prediction:
    """Read one photo in the process's next batch (from any thread); wait at most `timeout` s.

    Raises what the pass raised (NoActiveModel, ModelUnavailable, …), or TimeoutError.
    """
    return photo_batcher().submit(image).result(timeout=timeout)


def photo_batcher() -> Batcher:
    """The process's one photo batcher (ML_BATCH_MAX photos a pass, ML_BATCH_WAIT_MS at most)."""
    global _batcher
    with _batcher_lock:
        if _batcher is None:
            _batcher = Batcher(
                _read_gathered, max_size=settings.ML_BATCH_MAX, max_wait=settings.ML_BATCH_WAIT_MS / 1000,
                name="photos", on_batch=metrics.inference_batch_observed,
            )
        return _batcher


def _read_gathered(images: list[Image.Image]) -> list[Prediction]:
    # the batcher's thread: a connection broken or too old is replaced, as Celery does for tasks
    close_old_connections()
    return active_reader().read_batch(images)  # a new active version takes over here, between batches


def reload_check_seconds() -> float:
    return settings.ML_RELOAD_CHECK_SECONDS


def _load(name: str, *, current: Reader | None) -> Reader:
    version = model_version_get(version=name)
    try:
        if version is None:
            raise ModelUnavailable(f"Model {name} disappeared while it was being loaded.")
        reader = Reader(version)
    except ModelUnavailable:
        if current is None:
            raise
        logger.exception("could not switch to model %s; %s keeps reading photos", name, current.version)
        return current
    if current is None:
        logger.info("loaded model %s", name)
    else:
        logger.info("switched from model %s to %s", current.version, name)
    return reader


def decode_photo(data: bytes, *, min_side: int = DECODE_MIN_SIDE) -> Image.Image:
    """The photo in `data` as an RGB image, upright (EXIF orientation applied).

    Raises UndecodablePhoto for empty data, data that is not an image, and truncated or
    corrupt images; a large JPEG is decoded at the smallest reduced scale that keeps at
    least `min_side` pixels per side (the reader passes twice its model's input size).
    """
    if not data:
        raise UndecodablePhoto("The photo is empty (0 bytes).")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                if image.format == "JPEG":
                    image.draft("RGB", (min_side, min_side))
                upright = ImageOps.exif_transpose(image)
                return upright.convert("RGB")  # decodes everything: a truncated file fails here
    except UnidentifiedImageError as exc:
        raise UndecodablePhoto("The data is not an image format Pillow can read.") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UndecodablePhoto(f"The image is too large to decode safely: {exc}") from exc
    except Exception as exc:  # Pillow's decoders raise OSError, SyntaxError, ValueError, struct.error...
        raise UndecodablePhoto(f"The image is corrupt or truncated: {exc}") from exc
