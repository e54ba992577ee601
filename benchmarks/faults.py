#!/usr/bin/env python
"""DG-04 (docs/decisions.md) measured under faults: messages lost and effects duplicated when things break.

Three scenarios on the real AI path (TaskSubmittedEvent -> the `worker-ai` consumer), on a
private RabbitMQ node (tests/rabbitmq_node.py; the shared RabbitMQ is never stopped) and a
private database:

1. consumer killed: three AI workers read a batch; one is killed with SIGKILL mid-batch
   and started again (the verification plan's "consumer killed and restarted: 0 lost").
2. broker restart: a batch waits in the queue with no worker running; the RabbitMQ node
   is stopped and started again; then the workers read it.
3. broker outage: RabbitMQ is stopped (`stop_app`) while tasks are submitted through
   `task_submit` (as the API does: each its own transaction, answered at once); it is
   started again; the relay publishes what was committed meanwhile; the workers read it.

Lost = tasks accepted but never read; duplicate effects = events whose handler committed
more than once (from the workers' "processed" log lines; a redelivery that was skipped as
already processed is counted separately, it is the idempotency at work).

    python benchmarks/faults.py [-n 300] [--workers 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.stack import BenchStack  # noqa: E402
from tests import processes  # noqa: E402
from tests.rabbitmq_node import RabbitMQNode, available  # noqa: E402

_PROCESSED = re.compile(r"processed in [\d.]+ ms event_id=(\S+)")
_SKIPPED = re.compile(r"skipped: already processed event_id=(\S+)")


class Scenario:
    """Workers, tasks and the bookkeeping every scenario shares."""

    def __init__(self, stack: BenchStack, *, workers: int, photo_name: str, photo: bytes):
        from tests.factories import helper

        self.stack = stack
        self.workers_wanted = workers
        self.photo_name = photo_name
        self.photo = photo
        self.log_dir = stack.media / "logs"
        self.workers = []
        self.logs: list[str] = []
        self.user = helper()
        self.branch = self.user.helper.branch
        self._serial = 0

    def launch_worker(self):
        from tests.support import WorkerProcess

        self._serial += 1
        from django.conf import settings

        # as the Procfile's worker-ai runs: a thread pool whose photos are read in batches
        worker = WorkerProcess(
            ["task.submitted"], name=f"ai-{self._serial}", concurrency=settings.ML_BATCH_MAX, pool="threads",
            log_dir=self.log_dir,
            DJANGO_SETTINGS_MODULE="fitness.settings", ML_PRELOAD="1", TORCH_NUM_THREADS="1", LOG_LEVEL="INFO",
        )
        self.workers.append(worker.launch())
        return worker

    def start_worker(self):
        return self.launch_worker().wait_ready(timeout=120)

    def start_workers(self) -> None:
        """Every worker loads torch and the model at once; then each is waited for."""
        launched = [self.launch_worker() for _ in range(self.workers_wanted)]
        for worker in launched:
            worker.wait_ready(timeout=180)

    def stop_workers(self) -> None:
        from tests import processes

        running = [worker for worker in self.workers if worker.process is not None]
        processes.terminate_all([worker.process for worker in running], 60)  # warm shutdowns, all at once
        for worker in running:
            self.logs.append(worker.log())
            worker.stop()
        self.workers = []

    def create_tasks(self, n: int) -> list[int]:
        from tasks.models import LaundryTask

        return [t.pk for t in LaundryTask.objects.bulk_create(
            LaundryTask(branch=self.branch, helper=self.user, photo=self.photo_name, photo_sha256="0" * 64,
                        photo_size=len(self.photo), photo_content_type="image/jpeg")
            for _ in range(n)
        )]

    def publish(self, task_ids: list[int]) -> None:
        from django.db import transaction

        from messaging.contracts import TaskSubmittedEvent
        from messaging.outbox import publish_event, relay_outbox

        with transaction.atomic():
            for task_id in task_ids:
                publish_event(TaskSubmittedEvent(task_id=task_id, branch_id=self.branch.pk, helper_id=self.user.pk,
                                                 photo=self.photo_name))
        # the relay's work, done here and now: every scenario starts with the events in the queue
        # (with the TaskAnalyzedEvents of an earlier scenario's readings, which go out too)
        report = relay_outbox(batch_size=500)
        if report.failed or report.published < len(task_ids):
            raise RuntimeError(f"published {report.published} events for {len(task_ids)} tasks: {report.error}")

    @staticmethod
    def read(task_ids: list[int]) -> int:
        from tasks.models import Reading

        return Reading.objects.filter(task_id__in=task_ids).count()

    def wait_read(self, task_ids: list[int], timeout: float) -> float:
        started = time.monotonic()
        while self.read(task_ids) < len(task_ids) and time.monotonic() - started < timeout:
            time.sleep(0.2)
        return time.monotonic() - started

    def outcome(self, task_ids: list[int], **extra) -> dict:
        from tasks.models import LaundryTask

        self.stop_workers()
        processed = Counter(e for log in self.logs for e in _PROCESSED.findall(log))
        skipped = sum(len(_SKIPPED.findall(log)) for log in self.logs)
        analyzed = LaundryTask.objects.filter(pk__in=task_ids, status="analyzed").count()
        self.logs = []
        return {
            "tasks": len(task_ids),
            "lost": len(task_ids) - analyzed,
            "duplicate_effects": sum(1 for n in processed.values() if n > 1),
            "redeliveries_skipped": skipped,
            **extra,
        }


def consumer_killed(scenario: Scenario, n: int) -> dict:
    scenario.start_workers()
    tasks = scenario.create_tasks(n)
    started = time.monotonic()
    scenario.publish(tasks)
    while scenario.read(tasks) < n // 5 and time.monotonic() - started < 120:
        time.sleep(0.05)
    victim = scenario.workers[0]
    read_before = scenario.read(tasks)
    scenario.logs.append(victim.log())
    victim.kill()  # SIGKILL to the worker's process group: main process and pool child
    scenario.workers.remove(victim)
    restarted_in = time.monotonic()
    scenario.start_worker()
    restarted_in = time.monotonic() - restarted_in
    scenario.wait_read(tasks, timeout=300)
    return scenario.outcome(tasks, read_when_killed=read_before, restart_seconds=round(restarted_in, 1),
                            seconds=round(time.monotonic() - started, 1))


def broker_restarted(scenario: Scenario, node: RabbitMQNode, n: int) -> dict:
    from messaging import broker
    from tests.support import queue_depth

    tasks = scenario.create_tasks(n)
    scenario.publish(tasks)
    waiting_before = queue_depth("task.submitted")
    started = time.monotonic()
    node.restart()
    restart_seconds = time.monotonic() - started
    broker.close_connection()
    waiting_after = queue_depth("task.submitted")
    scenario.start_workers()
    scenario.wait_read(tasks, timeout=300)
    return scenario.outcome(tasks, waiting_before=waiting_before, waiting_after=waiting_after,
                            restart_seconds=round(restart_seconds, 1))


def broker_outage(scenario: Scenario, node: RabbitMQNode, n: int) -> dict:
    from django.core.files.uploadedfile import SimpleUploadedFile

    from messaging.models import OutboxMessage
    from tasks.services import task_submit
    from tests.support import CommandProcess

    scenario.start_workers()
    relay = CommandProcess(
        "relay_outbox", "--interval", "0.2", name="relay", log_dir=scenario.log_dir, ready="outbox relay started",
        DJANGO_SETTINGS_MODULE="fitness.settings",
    ).start()
    accepted: list[int] = []
    # the relay's attempts fail while RabbitMQ is down and it logs each; once is enough here
    logging.getLogger("messaging.outbox").setLevel(logging.CRITICAL)
    try:
        node.stop_app()
        down = time.monotonic()
        for i in range(n):
            photo = SimpleUploadedFile(f"laundry-{i}.jpg", scenario.photo, content_type="image/jpeg")
            accepted.append(task_submit(helper=scenario.user, branch=scenario.branch, photo=photo).task.pk)
        pending = OutboxMessage.objects.filter(published_at__isnull=True).count()
        node.start_app()
        outage = time.monotonic() - down
        back = time.monotonic()
        scenario.wait_read(accepted, timeout=300)
        caught_up = time.monotonic() - back
    finally:
        relay.stop()
        logging.getLogger("messaging.outbox").setLevel(logging.NOTSET)
    return scenario.outcome(accepted, outbox_pending_in_outage=pending, outage_seconds=round(outage, 1),
                            caught_up_seconds=round(caught_up, 1))


def run(*, tasks: int, workers: int) -> dict:
    reason = available()
    if reason:
        raise SystemExit(f"cannot run: {reason}")
    processes.handle_termination()  # SIGTERM: the workers, the relay and the node are stopped too
    with RabbitMQNode() as node, BenchStack("faults", node=node) as stack:
        import os

        from django.core.files.base import ContentFile
        from django.core.files.storage import default_storage
        from django.core.management import call_command

        from benchmarks.ai_throughput import bench_photo

        print("training a model version for the run", file=sys.stderr)
        call_command("train_model", "--per-class", "2", "--epochs", "1", stdout=open(os.devnull, "w"))
        photo = bench_photo()
        name = default_storage.save("tasks/bench/photo.jpg", ContentFile(photo))
        scenario = Scenario(stack, workers=workers, photo_name=name, photo=photo)
        results = {}
        try:
            print(f"1/3 consumer killed: {tasks} tasks, {workers} AI workers, one killed mid-batch", file=sys.stderr)
            results["consumer_killed"] = consumer_killed(scenario, tasks)
            print(f"2/3 broker restart with {tasks} messages waiting", file=sys.stderr)
            results["broker_restart"] = broker_restarted(scenario, node, tasks)
            outage_tasks = max(10, tasks // 3)
            print(f"3/3 broker outage: {outage_tasks} tasks submitted while RabbitMQ is down", file=sys.stderr)
            results["broker_outage"] = broker_outage(scenario, node, outage_tasks)
        finally:
            scenario.stop_workers()  # a scenario that failed midway leaves none running
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--tasks", type=int, default=300, help="tasks per scenario (default 300)")
    parser.add_argument("--workers", type=int, default=3, help="AI worker processes (default 3)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    args = parser.parse_args()
    results = run(tasks=args.tasks, workers=args.workers)
    print()
    print(f"{'scenario':<18} {'tasks':>6} {'lost':>5} {'dup. effects':>13} {'redeliveries skipped':>21}")
    for name, r in results.items():
        print(f"{name:<18} {r['tasks']:>6} {r['lost']:>5} {r['duplicate_effects']:>13} "
              f"{r['redeliveries_skipped']:>21}")
    for name, r in results.items():
        details = ", ".join(f"{k}={v}" for k, v in r.items()
                            if k not in ("tasks", "lost", "duplicate_effects", "redeliveries_skipped"))
        print(f"  {name}: {details}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")
    bad = any(r["lost"] or r["duplicate_effects"] for r in results.values())
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
