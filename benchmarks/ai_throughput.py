#!/usr/bin/env python
"""AI reading throughput end to end, beside the bare model's, measured in the same run.

1. Bare model: the active model version reads an already-decoded photo, one at a time,
   in this process (with every core, and with one thread as each AI worker uses).
2. End to end: N tasks (default 3000) are committed with their outbox events and
   published while the AI pool (default three `worker-ai` processes, one torch thread
   each, as the Procfile runs them) is consuming, with the relay running as in the
   Procfile; the clock runs from the first publish to the last reading stored.

Runs in a private database and vhost (removed at the end), with a model version trained
for the run (`train_model` with few images: accuracy does not change the cost).

    python benchmarks/ai_throughput.py [-n 3000] [--workers 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.stack import ROOT, BenchStack, celery_worker, percentile  # noqa: E402
from tests import processes  # noqa: E402


def bench_photo() -> bytes:
    """A 640x480 JPEG of a synthetic garment with camera-like noise (about a phone upload)."""
    from PIL import Image

    from ml.synthetic import generate

    image, _ = generate(per_class=1, image_size=240, seed=7)[0]
    image = image.resize((640, 480))
    noise = Image.effect_noise((640, 480), 24).convert("RGB")
    image = Image.blend(image.convert("RGB"), noise, 0.15)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def bare_model_rate(photo: bytes, threads: int, seconds: float) -> float:
    import torch

    from ml.inference import Reader, decode_photo
    from ml.selectors import model_version_active

    torch.set_num_threads(threads)
    reader = Reader(model_version_active())
    image = decode_photo(photo)
    for _ in range(10):
        reader.read(image)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        reader.read(image)
        count += 1
    return count / (time.perf_counter() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--tasks", type=int, default=3000, help="tasks to read (default 3000)")
    parser.add_argument("--workers", type=int, default=3, help="AI worker processes (default 3)")
    parser.add_argument("--bare-seconds", type=float, default=5.0,
                        help="seconds the bare model reads, per thread setting (default 5)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    args = parser.parse_args()

    with BenchStack("ai") as stack:
        from django.core.files.base import ContentFile
        from django.core.files.storage import default_storage
        from django.core.management import call_command
        from django.db import transaction

        from messaging.contracts import TaskSubmittedEvent
        from messaging.outbox import publish_event
        from tasks.models import LaundryTask, Reading
        from tests.factories import helper

        print("training a model version for the run", file=sys.stderr)
        call_command("train_model", "--per-class", "2", "--epochs", "1", stdout=open(os.devnull, "w"))
        photo = bench_photo()
        photo_name = default_storage.save("tasks/bench/photo.jpg", ContentFile(photo))

        cores = os.cpu_count() or 1
        bare_all = bare_model_rate(photo, cores, args.bare_seconds)
        bare_one = bare_model_rate(photo, 1, args.bare_seconds)
        print(f"bare model: {bare_all:.0f} images/s ({cores} threads), {bare_one:.0f} images/s (1 thread)",
              file=sys.stderr)

        workers = []
        for i in range(args.workers):
            env = dict(stack.env, ML_PRELOAD="1", TORCH_NUM_THREADS="1")
            workers.append(processes.spawn(
                celery_worker("task.submitted", f"ai-bench-{i}", loglevel="WARNING"),
                cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))
        # the relay, as the Procfile runs it: the one publisher of the events committed below
        workers.append(processes.spawn(
            [sys.executable, "manage.py", "relay_outbox", "--interval", "0.5"], cwd=ROOT, env=stack.env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))
        try:
            user = helper()
            branch = user.helper.branch
            tasks = LaundryTask.objects.bulk_create(
                LaundryTask(branch=branch, helper=user, photo=photo_name, photo_sha256="0" * 64,
                            photo_size=len(photo), photo_content_type="image/jpeg")
                for _ in range(args.tasks)
            )
            time.sleep(8)  # let the workers start and preload torch and the model
            print(f"publishing {args.tasks} events to {args.workers} AI workers", file=sys.stderr)
            started = time.time()
            with transaction.atomic():
                for task in tasks:
                    publish_event(TaskSubmittedEvent(task_id=task.pk, branch_id=branch.pk, helper_id=user.pk,
                                                     photo=photo_name))
            # committed: the relay, woken by the commit's NOTIFY, publishes them now
            published = time.time()
            deadline = started + 600
            done = 0
            while time.time() < deadline:
                done = Reading.objects.count()
                if done >= args.tasks:
                    break
                time.sleep(0.2)
            finished = max(r.timestamp() for r in Reading.objects.values_list("created_at", flat=True)) \
                if done else time.time()
            latencies = [
                (r.created_at.timestamp() - started) for r in Reading.objects.only("created_at")
            ]
            inference = list(Reading.objects.values_list("inference_ms", flat=True))
            after_publish = sum(1 for r in latencies if r > published - started)
        finally:
            processes.terminate_all(workers, 60)

    wall = finished - started
    rate = done / wall if wall > 0 else 0.0
    # once every event is published, the pool only consumes: its rate without the publisher
    tail = finished - published
    drain_rate = after_publish / tail if tail > 0 else 0.0
    figures = {
        "tasks": args.tasks,
        "tasks_read": done,
        "ai_workers": args.workers,
        "end_to_end_tasks_per_s": round(rate, 1),
        "publish_seconds": round(published - started, 2),
        "wall_seconds": round(wall, 2),
        "bare_model_images_per_s": round(bare_all, 1),
        "bare_model_images_per_s_one_thread": round(bare_one, 1),
        "end_to_end_vs_bare_model": round(rate / bare_all, 2) if bare_all else None,
        "consume_only_tasks_per_s": round(drain_rate, 1),
        "inference_ms_p50": round(statistics.median(inference), 2) if inference else None,
        "last_reading_after_s_p99": round(percentile(latencies, 99), 2) if latencies else None,
    }
    print()
    print(f"{'measure':<52} {'value':>10}")
    print(f"{'bare model, images/s (' + str(os.cpu_count()) + ' threads, one at a time)':<52} {bare_all:>10.1f}")
    print(f"{'bare model, images/s (1 thread, one at a time)':<52} {bare_one:>10.1f}")
    print(f"{'end to end, tasks/s (' + str(args.workers) + ' AI workers, published -> stored)':<52} {rate:>10.1f}")
    print(f"{'end to end / bare model':<52} {figures['end_to_end_vs_bare_model']:>10}")
    print(f"{'consume only, tasks/s (after the last publish)':<52} {drain_rate:>10.1f}")
    print(f"{'tasks read / published':<52} {done:>5}/{args.tasks}")
    print(f"{'inference time in the worker, p50 ms':<52} {figures['inference_ms_p50']:>10}")
    print()
    print("seed: 3 AI consumers >= 60 tasks/s; goal: end to end >= half the bare model's rate")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0 if done == args.tasks else 1


if __name__ == "__main__":
    sys.exit(main())
