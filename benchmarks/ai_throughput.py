#!/usr/bin/env python
"""AI reading throughput and latency end to end, beside a bare pipeline measured in the same run.

1. Bare pipeline: this process decodes the run's photos and reads them in batches of
   ML_BATCH_MAX (decode, squash, one forward pass per batch; every core; no broker, no
   database): the ceiling the AI pool is compared with.
2. The AI pool as `make run` starts it: N processes (default 3) from the Procfile's
   `worker-ai` line (thread pool of ML_BATCH_MAX, one torch thread, batched readings).
3. Light load: TaskSubmittedEvents for committed tasks are published at a fixed rate
   (default 10/s) for a few seconds; each one's latency runs from its publish to its
   reading stored.
4. Saturation: N tasks (default 3000) are published as fast as one publisher goes while
   the pool reads; the clock runs from the first publish to the last reading stored,
   and each task's latency from its own publish.

Events are published as the relay publishes outbox rows (`messaging.broker.publish_envelope`,
one confirm each), so the figures are the AI pool's, not the outbox's. The batch sizes
formed come from the workers' own `fitness_inference_batch_size` histogram (their
Prometheus files). Runs in a private database and vhost (removed at the end), with a model
version trained for the run (accuracy does not change the cost).

    python benchmarks/ai_throughput.py [-n 3000] [--workers 3] [--rate 10] [--json FILE]
    python benchmarks/ai_throughput.py --smoke
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.stack import ROOT, BenchStack, percentile  # noqa: E402
from benchmarks.stack import cpu_seconds as process_cpu_seconds  # noqa: E402
from tests import processes  # noqa: E402

GOAL_TASKS_PER_S = 150
GOAL_VS_BARE = 0.5
GOAL_LIGHT_P50_MS = 100


def bench_photo(seed: int = 7) -> bytes:
    """A 640x480 JPEG of a synthetic garment with camera-like noise (about a phone upload)."""
    from PIL import Image

    from ml.synthetic import generate

    image, _ = generate(per_class=1, image_size=240, seed=seed)[0]
    image = image.resize((640, 480))
    noise = Image.effect_noise((640, 480), 24).convert("RGB")
    image = Image.blend(image.convert("RGB"), noise, 0.15)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def bare_pipeline_rate(photos: list[bytes], batch_size: int, seconds: float, threads: int) -> float:
    """Photos/s through decode + squash + batched forward pass in this process, `threads` torch threads."""
    import torch

    from ml.inference import Reader, decode_photo
    from ml.preprocess import squash
    from ml.selectors import model_version_active

    reader = Reader(model_version_active())
    torch.set_num_threads(threads)  # after the Reader, which sets TORCH_NUM_THREADS' (or every core's) count
    size = reader.image_size

    def one_batch(start: int) -> None:
        batch = [photos[(start + i) % len(photos)] for i in range(batch_size)]
        reader.read_batch([squash(decode_photo(data, min_side=2 * size), size) for data in batch])

    for i in range(3):
        one_batch(i)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        one_batch(count)
        count += batch_size
    return count / (time.perf_counter() - started)


def procfile_line(process: str) -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        if name == process and not line.startswith("#"):
            return command.strip()
    raise LookupError(f"the Procfile has no {process}: line")


def batch_histogram(metrics_dir: str) -> dict[str, float]:
    """The AI workers' fitness_inference_batch_size histogram, summed over their files."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=metrics_dir)
    found: dict[str, float] = {}
    for metric in registry.collect():
        if metric.name != "fitness_inference_batch_size":
            continue
        for sample in metric.samples:
            if sample.name.endswith("_bucket"):
                found[sample.labels["le"]] = found.get(sample.labels["le"], 0) + sample.value
            elif sample.name.endswith(("_count", "_sum")):
                key = sample.name.rsplit("_", 1)[1]
                found[key] = found.get(key, 0) + sample.value
    return found


def batch_summary(before: dict[str, float], after: dict[str, float]) -> dict:
    """Batches formed between two readings of the histogram: count, mean and per-size counts."""
    delta = {key: after.get(key, 0) - before.get(key, 0) for key in after}
    batches = int(delta.get("count", 0))
    mean = delta.get("sum", 0) / batches if batches else None
    cumulative = sorted(((float(le), n) for le, n in delta.items() if le not in ("count", "sum")))
    sizes, previous = {}, 0.0
    for le, n in cumulative:
        if n - previous > 0 and le != float("inf"):
            sizes[f"<={le:g}"] = int(n - previous)
        previous = n
    p50 = next((le for le, n in cumulative if batches and n >= batches / 2), None)
    return {"batches": batches, "mean": round(mean, 2) if mean else None,
            "p50_at_most": None if p50 is None else f"{p50:g}", "sizes": sizes}


class Publisher:
    """Publishes the TaskSubmittedEvent of each task, as the relay does; remembers when."""

    def __init__(self, tasks, photos: list[str]):
        self.tasks, self.photos = tasks, photos
        self.published_at: dict[int, float] = {}

    def publish(self, task, index: int) -> None:
        from fitness import topology
        from messaging.broker import publish_envelope
        from messaging.contracts import TaskSubmittedEvent
        from messaging.errors import BrokerUnavailable
        from messaging.events import Envelope

        envelope = Envelope.wrap(TaskSubmittedEvent(task_id=task.pk, branch_id=task.branch_id,
                                                    helper_id=task.helper_id, photo=task.photo.name),
                                 correlation_id=f"bench-{task.pk}")
        self.published_at[task.pk] = time.time()
        for _ in range(20):  # as the relay does: RabbitMQ slow to answer, try again shortly
            try:
                publish_envelope(topology.routing_key_for_event(envelope.event_type), envelope.as_message_body())
                return
            except BrokerUnavailable as exc:
                print(f"publishing task {task.pk}: {exc}; trying again", file=sys.stderr)
                time.sleep(0.5)
        raise SystemExit(f"RabbitMQ refused task {task.pk}'s event 20 times")

    def at_rate(self, tasks, rate: float) -> None:
        started = time.monotonic()
        for i, task in enumerate(tasks):
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.publish(task, i)

    def flat_out(self, tasks) -> None:
        for i, task in enumerate(tasks):
            self.publish(task, i)


def wait_for_readings(task_ids: list[int], timeout: float) -> dict[int, float]:
    """{task id: when its reading was stored} once every task has one (or at the timeout)."""
    from tasks.models import Reading

    deadline = time.time() + timeout
    while True:
        done = Reading.objects.filter(task_id__in=task_ids).count()
        if done >= len(task_ids) or time.time() > deadline:
            break
        time.sleep(0.2)
    return {task_id: created.timestamp() for task_id, created in
            Reading.objects.filter(task_id__in=task_ids).values_list("task_id", "created_at")}


def latency_ms(published: dict[int, float], stored: dict[int, float]) -> list[float]:
    return [(stored[task] - published[task]) * 1000 for task in stored if task in published]


def cpu_seconds(pids: list[int]) -> float:
    """CPU time (user + system) these processes have used so far."""
    return sum(process_cpu_seconds(pids).values())


def consumers_of(queue: str) -> int:
    """Consumers of `queue` now (0 when RabbitMQ does not answer in time: ask again)."""
    from kombu.exceptions import OperationalError

    from fitness.celery import app

    try:
        with app.connection_for_write() as connection:
            _, _, consumers = connection.default_channel.queue_declare(queue, passive=True)
            return consumers
    except (OperationalError, OSError):
        return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--tasks", type=int, default=3000, help="tasks published flat out (default 3000)")
    parser.add_argument("--workers", type=int, default=3, help="AI worker processes (default 3)")
    parser.add_argument("--rate", type=float, default=10.0, help="tasks/s offered at light load (default 10)")
    parser.add_argument("--light-seconds", type=float, default=15.0, help="seconds of light load (default 15)")
    parser.add_argument("--bare-seconds", type=float, default=5.0,
                        help="seconds the bare pipeline reads (default 5)")
    parser.add_argument("--smoke", action="store_true",
                        help="small sizes (60 tasks, 3 s of light load, 1 s bare, 2 workers unless given)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    args = parser.parse_args()
    if args.tasks < 1 or args.workers < 1 or args.rate <= 0 or args.light_seconds <= 0 or args.bare_seconds <= 0:
        parser.error("sizes, rates and seconds must be positive")
    if args.smoke:
        args.tasks, args.light_seconds, args.bare_seconds = min(args.tasks, 60), 3.0, 1.0
        if "--workers" not in sys.argv:
            args.workers = 2

    with BenchStack("ai") as stack:
        from django.conf import settings
        from django.core.files.base import ContentFile
        from django.core.files.storage import default_storage
        from django.core.management import call_command

        from tasks.models import LaundryTask
        from tests.factories import helper

        print("training a model version for the run", file=sys.stderr)
        call_command("train_model", "--per-class", "2", "--epochs", "1", stdout=open(os.devnull, "w"))
        photos = [bench_photo(seed) for seed in range(7, 11)]
        names = [default_storage.save(f"tasks/bench/photo-{i}.jpg", ContentFile(p)) for i, p in enumerate(photos)]

        batch_max = settings.ML_BATCH_MAX
        # every core, and one torch thread (as each AI worker runs): on a machine busy with other
        # work, intra-op threads that wait for each other can be the slower; the faster one counts
        cores = os.cpu_count() or 1
        bare_by_threads = {threads: bare_pipeline_rate(photos, batch_max, args.bare_seconds, threads)
                           for threads in sorted({cores, 1})}
        bare = max(bare_by_threads.values())
        print("bare pipeline: " + ", ".join(f"{rate:.0f} photos/s ({threads} threads)"
                                             for threads, rate in bare_by_threads.items()), file=sys.stderr)

        workers = []
        line = procfile_line("worker-ai")
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        log_dir = ROOT / "var" / "bench-logs" / f"ai-throughput-{stack.run}"
        log_dir.mkdir(parents=True, exist_ok=True)
        print(f"the AI workers log to {log_dir}", file=sys.stderr)
        for i in range(args.workers):
            env = dict(stack.env, PORT=str(9100 + i), PATH=path)
            with open(log_dir / f"worker-ai-{i}.log", "ab") as log:
                workers.append(processes.spawn(["bash", "-c", line], cwd=ROOT, env=env,
                                               stdout=log, stderr=subprocess.STDOUT))
        try:
            user = helper()
            branch = user.helper.branch
            light_count = max(1, round(args.rate * args.light_seconds))
            tasks = LaundryTask.objects.bulk_create(
                LaundryTask(branch=branch, helper=user, photo=names[i % len(names)], photo_sha256="0" * 64,
                            photo_size=len(photos[0]), photo_content_type="image/jpeg")
                for i in range(light_count + args.tasks)
            )
            light, heavy = tasks[:light_count], tasks[light_count:]
            deadline = time.monotonic() + 120
            while consumers_of("task.submitted") < args.workers:
                if time.monotonic() > deadline:
                    raise SystemExit("the AI workers did not start consuming within 120 s")
                time.sleep(0.5)
            publisher = Publisher(tasks, names)

            print(f"light load: {args.rate:g} tasks/s for {args.light_seconds:g} s", file=sys.stderr)
            metrics_dir = stack.env["PROMETHEUS_MULTIPROC_DIR"]
            before = batch_histogram(metrics_dir)
            pids = [worker.pid for worker in workers]
            cpu_before = cpu_seconds(pids)
            publisher.at_rate(light, args.rate)
            light_stored = wait_for_readings([t.pk for t in light], timeout=60)
            cpu_light = cpu_seconds(pids)
            between = batch_histogram(metrics_dir)
            light_batches = batch_summary(before, between)
            light_latency = latency_ms(publisher.published_at, light_stored)

            print(f"saturation: {args.tasks} tasks published flat out to {args.workers} AI workers", file=sys.stderr)
            sender = threading.Thread(target=publisher.flat_out, args=(heavy,))
            started = time.time()
            sender.start()
            sender.join()
            published = time.time()
            heavy_stored = wait_for_readings([t.pk for t in heavy], timeout=600)
            cpu_heavy = cpu_seconds(pids)
            heavy_batches = batch_summary(between, batch_histogram(metrics_dir))
            heavy_latency = latency_ms(publisher.published_at, heavy_stored)
        finally:
            processes.terminate_all(workers, 60)

    done = len(heavy_stored)
    finished = max(heavy_stored.values()) if heavy_stored else time.time()
    wall = finished - started
    rate = done / wall if wall > 0 else 0.0
    after_publish = sum(1 for at in heavy_stored.values() if at > published)
    tail = finished - published
    drain_rate = after_publish / tail if tail > 0 else 0.0

    def stats(values: list[float]) -> dict:
        if not values:
            return {"p50_ms": None, "p99_ms": None}
        return {"p50_ms": round(statistics.median(values), 1), "p99_ms": round(percentile(values, 99), 1)}

    figures = {
        "tasks": args.tasks,
        "tasks_read": done,
        "light_tasks": light_count,
        "light_tasks_read": len(light_stored),
        "ai_workers": args.workers,
        "ml_batch_max": batch_max,
        "ml_batch_wait_ms": settings.ML_BATCH_WAIT_MS,
        "worker_ai_command": line,
        "bare_pipeline_photos_per_s": round(bare, 1),
        "bare_pipeline_photos_per_s_by_threads": {str(t): round(v, 1) for t, v in bare_by_threads.items()},
        "end_to_end_tasks_per_s": round(rate, 1),
        "end_to_end_vs_bare": round(rate / bare, 2) if bare else None,
        "consume_only_tasks_per_s": round(drain_rate, 1),
        "publish_seconds": round(published - started, 2),
        "wall_seconds": round(wall, 2),
        # the AI workers' own CPU per task read (not PostgreSQL's or RabbitMQ's): less load-dependent
        "worker_cpu_ms_per_task_light": round((cpu_light - cpu_before) * 1000 / max(len(light_stored), 1), 2),
        "worker_cpu_ms_per_task_saturation": round((cpu_heavy - cpu_light) * 1000 / max(done, 1), 2),
        "light_rate_offered": args.rate,
        "light_latency": stats(light_latency),
        "saturation_latency": stats(heavy_latency),
        "light_batches": light_batches,
        "saturation_batches": heavy_batches,
        "smoke": args.smoke,
    }
    rows = [
        *[(f"bare pipeline, photos/s (decode + batches of {batch_max}, {threads} torch threads)", f"{value:.1f}")
          for threads, value in bare_by_threads.items()],
        (f"end to end, tasks/s ({args.workers} AI workers, published -> stored)", f"{rate:.1f}"),
        ("end to end / bare pipeline", f"{figures['end_to_end_vs_bare']}"),
        ("consume only, tasks/s (after the last publish)", f"{drain_rate:.1f}"),
        ("tasks read / published (saturation)", f"{done}/{args.tasks}"),
        ("AI workers' CPU ms per task, light / saturation",
         f"{figures['worker_cpu_ms_per_task_light']} / {figures['worker_cpu_ms_per_task_saturation']}"),
        (f"latency p50 / p99 ms at {args.rate:g} tasks/s offered",
         f"{figures['light_latency']['p50_ms']} / {figures['light_latency']['p99_ms']}"),
        ("latency p50 / p99 ms at saturation (published flat out)",
         f"{figures['saturation_latency']['p50_ms']} / {figures['saturation_latency']['p99_ms']}"),
        (f"batches at {args.rate:g} tasks/s: count, mean size", f"{light_batches['batches']}, {light_batches['mean']}"),
        ("batches at saturation: count, mean size", f"{heavy_batches['batches']}, {heavy_batches['mean']}"),
        ("batch sizes at saturation (histogram buckets)",
         " ".join(f"{size}:{n}" for size, n in heavy_batches["sizes"].items())),
    ]
    width = max(len(r[0]) for r in rows)
    print()
    print(f"{'measure':<{width}}  value")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print()
    print(f"seed: 3 AI consumers >= 60 tasks/s; goals: >= {GOAL_TASKS_PER_S} tasks/s end to end, >= {GOAL_VS_BARE} "
          f"of the bare pipeline, p50 < {GOAL_LIGHT_P50_MS} ms at 10 tasks/s offered")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0 if done == args.tasks and len(light_stored) == light_count else 1


if __name__ == "__main__":
    sys.exit(main())
