#!/usr/bin/env python
"""Retraining on owner-confirmed photos, and how fast a promoted version starts reading.

1. A base model is trained as `make run` trains it (train_model on synthetic pictures).
2. N confirmed samples (default 500) arrive from branches whose photos look unlike the
   synthetic ones: a dim laundry room and a phone camera (lower contrast and brightness,
   slight blur). Each goes through `training_sample_record` (photo copied, held-out side
   by hash), with the base model's reading as the AI labels and the truth as the owner's.
3. One retraining run (the pipeline of the mlops worker, run in this process): its wall
   time, and the held-out exact match of the base model and the candidate on the same
   held-out samples; also both on fresh synthetic pictures (what the base knew).
4. A real AI worker reads a steady stream of uploads while the active version is switched
   back and forth K times (default 6): the time from each activation's commit to the first
   reading made by the new version, and that no upload is lost meanwhile.

Runs in a private database, vhost and media directory (removed at the end).

    python benchmarks/retrain.py [--samples 500] [--base-per-class 150] [--switches 6] [--json FILE]
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import random
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.stack import ROOT, BenchStack, ai_worker  # noqa: E402
from tests import processes  # noqa: E402

SHIFT_SEED = 4242


def dim_room(image):
    """A photo taken in a dim laundry room with a phone: darker, flatter, slightly blurred."""
    from PIL import ImageEnhance, ImageFilter

    image = ImageEnhance.Contrast(image).enhance(0.55)
    image = ImageEnhance.Brightness(image).enhance(0.62)
    return image.filter(ImageFilter.GaussianBlur(0.8))


def jpeg(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=88)
    return buffer.getvalue()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=500, help="new confirmed samples (default 500)")
    parser.add_argument("--base-per-class", type=int, default=150,
                        help="synthetic pictures per kind for the base model (default 150, as train_model)")
    parser.add_argument("--base-epochs", type=int, default=8, help="epochs of the base model (default 8)")
    parser.add_argument("--switches", type=int, default=6, help="activations to time with a running worker")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    args = parser.parse_args()
    if args.samples < 50 or args.switches < 1:
        parser.error("--samples must be at least 50 and --switches at least 1")

    with BenchStack("retrain") as stack:
        from django.core.files.base import ContentFile
        from django.core.files.storage import default_storage
        from django.core.management import call_command

        from ml.inference import Reader, decode_photo
        from ml.labels import LABEL_SPACES
        from ml.models import ModelVersion, RetrainingRun
        from ml.nets import state_dict_from_bytes
        from ml.retraining import retrain_request
        from ml.retraining_pipeline import retrain_pending
        from ml.synthetic import generate
        from ml.training import evaluate
        from ml.training_data import training_sample_record

        say = lambda line: print(line, file=sys.stderr)  # noqa: E731
        say(f"training the base model ({args.base_per_class} pictures per kind, {args.base_epochs} epochs)")
        started = time.perf_counter()
        call_command("train_model", "--per-class", str(args.base_per_class), "--epochs", str(args.base_epochs),
                     "--activate", stdout=open(os.devnull, "w"))
        base_seconds = time.perf_counter() - started
        base = ModelVersion.objects.get(is_active=True)

        per_class = math.ceil(args.samples / 15)
        say(f"drawing {args.samples} photos of the branches (dim room) and confirming them")
        drawn = generate(per_class=per_class, image_size=2 * base.image_size, seed=SHIFT_SEED,
                         workers=min(os.cpu_count() or 1, 4))
        drawn = drawn[: args.samples]
        reader = Reader(base)
        photos = [jpeg(dim_room(image)) for image, _ in drawn]
        readings = reader.read_batch([decode_photo(photo) for photo in photos])
        for number, ((_, truth), photo, reading) in enumerate(zip(drawn, photos, readings, strict=True), 1):
            name = default_storage.save(f"tasks/bench/{uuid.uuid4().hex}.jpg", ContentFile(photo))
            training_sample_record(
                task_id=number, branch_id=1, photo=name, labels=truth, ai_labels=reading.labels,
                model_version=base.version, confirmed_by=1, confirmed_at=None, event_id=uuid.uuid4(),
            )
        corrected = sum(1 for (_, truth), reading in zip(drawn, readings, strict=True) if truth != reading.labels)

        say("retraining")
        run, _ = retrain_request(trigger=RetrainingRun.Trigger.COMMAND, enqueue=False)
        started = time.perf_counter()
        (run,) = retrain_pending(progress=say)
        retrain_seconds = time.perf_counter() - started
        if run.candidate is None:
            say(f"no candidate: {run.status}: {run.reason}")
            return 1
        candidate = run.candidate

        # what the base knew: fresh synthetic pictures, never seen by either model
        synthetic = generate(per_class=10, image_size=base.image_size, seed=777)
        with base.artifact.open("rb") as f:
            base_state = state_dict_from_bytes(f.read())
        with candidate.artifact.open("rb") as f:
            candidate_state = state_dict_from_bytes(f.read())
        base_synthetic = evaluate(base_state, synthetic, label_spaces=LABEL_SPACES, image_size=base.image_size)
        candidate_synthetic = evaluate(candidate_state, synthetic, label_spaces=LABEL_SPACES,
                                       image_size=base.image_size)

        say(f"timing {args.switches} activations with a running AI worker")
        switch = time_switches(stack, base, candidate, photos[0], args.switches)

    figures = {
        "samples": args.samples,
        "corrected_by_owners": corrected,
        "train_samples": run.train_size,
        "holdout_samples": run.holdout_size,
        "replayed_synthetic": run.candidate_metrics.get("train_size", 0) - run.train_size,
        "epochs": run.candidate_metrics.get("epochs"),
        "base_training_seconds": round(base_seconds, 1),
        "retrain_seconds": round(retrain_seconds, 1),
        "outcome": run.status,
        "holdout_exact_before": run.baseline_metrics["exact_match"],
        "holdout_exact_after": run.candidate_metrics["exact_match"],
        "holdout_garment_before": run.baseline_metrics["accuracy"]["garment"],
        "holdout_garment_after": run.candidate_metrics["accuracy"]["garment"],
        "holdout_condition_before": run.baseline_metrics["accuracy"]["condition"],
        "holdout_condition_after": run.candidate_metrics["accuracy"]["condition"],
        "synthetic_exact_before": base_synthetic["exact_match"],
        "synthetic_exact_after": candidate_synthetic["exact_match"],
        **switch,
    }
    rows = [
        ("new confirmed samples (corrected by owners)", f"{args.samples} ({corrected})"),
        ("trained on / held out / replayed synthetic",
         f"{figures['train_samples']} / {figures['holdout_samples']} / {figures['replayed_synthetic']}"),
        ("retraining wall time, s (2-core CPU)", f"{retrain_seconds:.1f}"),
        ("  (base model training for comparison, s)", f"{base_seconds:.1f}"),
        ("held-out exact match: before -> after", _pair(figures, "holdout_exact")),
        ("held-out garment accuracy: before -> after", _pair(figures, "holdout_garment")),
        ("held-out condition accuracy: before -> after", _pair(figures, "holdout_condition")),
        ("fresh synthetic exact match: before -> after", _pair(figures, "synthetic_exact")),
        ("outcome", run.status),
        ("activation -> first reading by it, s: median", f"{switch['switch_seconds_median']:.2f}"),
        ("activation -> first reading by it, s: max", f"{switch['switch_seconds_max']:.2f}"),
        ("uploads during the switches: uploaded / read / lost",
         f"{switch['uploads']} / {switch['uploads_read']} / {switch['uploads_lost']}"),
    ]
    print()
    width = max(len(name) for name, _ in rows)
    print(f"{'measure':<{width}}  value")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(f"\nworkers check the active version every ML_RELOAD_CHECK_SECONDS "
          f"({switch['reload_check_seconds']} s); goal: a promoted version reads within seconds")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0 if switch["uploads_lost"] == 0 else 1


def _pair(figures: dict, key: str) -> str:
    return f"{figures[key + '_before']:.1%} -> {figures[key + '_after']:.1%}"


def time_switches(stack: BenchStack, base, candidate, photo: bytes, switches: int) -> dict:
    """Upload steadily while switching the active version; time each switch's first reading."""
    from django.conf import settings
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.db import connection

    from ml.models import ModelVersion
    from ml.services import model_version_activate
    from tasks.models import Reading
    from tasks.services import task_submit
    from tests.factories import helper
    from tests.support import wait_for

    user = helper()
    branch = user.helper.branch
    worker = processes.spawn(
        ai_worker("ai-retrain", loglevel="WARNING"),
        cwd=ROOT, env=dict(stack.env, ML_PRELOAD="1", TORCH_NUM_THREADS="1"),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    stop = threading.Event()
    submitted: list[int] = []

    def upload_steadily() -> None:
        while not stop.is_set():
            upload = SimpleUploadedFile("photo.jpg", photo, content_type="image/jpeg")
            submitted.append(task_submit(helper=user, branch=branch, photo=upload).task.pk)
            time.sleep(0.05)
        connection.close()

    uploader = threading.Thread(target=upload_steadily, daemon=True)
    seconds: list[float] = []
    try:
        uploader.start()
        wait_for(lambda: Reading.objects.exists(), timeout=120, what="the AI worker's first reading")
        active = ModelVersion.objects.get(is_active=True)
        target = base if active == candidate else candidate
        pause = random.Random(7)
        for _ in range(switches):
            # a random pause, so activations fall anywhere in the workers' check interval
            time.sleep(pause.uniform(0.5, 3.0))
            model_version_activate(version=target, by="benchmarks/retrain.py")
            activated = time.time()
            first = wait_for(
                lambda t=target, since=_aware(activated): Reading.objects.filter(
                    model_version=t.version, created_at__gte=since).order_by("created_at")
                .values_list("created_at", flat=True).first(),
                timeout=60, interval=0.02, what=f"a reading by {target.version}",
            )
            seconds.append(first.timestamp() - activated)
            target = base if target == candidate else candidate
        stop.set()
        uploader.join(timeout=10)
        try:
            wait_for(lambda: Reading.objects.filter(task_id__in=submitted).count() >= len(submitted), timeout=120,
                     what="every upload to be read")
        except AssertionError:
            pass  # reported below as lost
    finally:
        stop.set()
        processes.terminate(worker, 60)  # then SIGKILL to what is left: the main process and its pool child
    read = Reading.objects.filter(task_id__in=submitted).count()
    return {
        "switches": switches,
        "switch_seconds_median": round(statistics.median(seconds), 3),
        "switch_seconds_max": round(max(seconds), 3),
        "switch_seconds": [round(s, 3) for s in seconds],
        "uploads": len(submitted),
        "uploads_read": read,
        "uploads_lost": len(submitted) - read,
        "reload_check_seconds": settings.ML_RELOAD_CHECK_SECONDS,
    }


def _aware(timestamp: float):
    from datetime import UTC, datetime

    return datetime.fromtimestamp(timestamp, UTC)


if __name__ == "__main__":
    sys.exit(main())
