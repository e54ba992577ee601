#!/usr/bin/env python
"""What the TaskAnalyzedEvent fan-out costs the AI consumer per reading, measured side by side.

The AI consumer's database work for one photo (ml.consumers.read_task_photo inside the base
consumer, messaging.consumers): the reading's statement (`reading_record`), then the closing
statement with the idempotency record and the processed activity row (`claim_and_record`),
in one transaction. Issue 17 adds the TaskAnalyzedEvent for the reading's subscribers (the
audit trail, the helper's push), and asks that this fan-out not slow the AI path. Three ways
run here in alternating blocks in one process, against a private database, so they see the
same machine:

* without the fan-out: the reading and the closing statement only;
* with the fan-out, as the consumer runs it: the event's outbox row goes into the closing
  statement (`messaging.outbox.staged_publishes`) and the relays' NOTIFY follows the commit;
* with the fan-out in a statement of its own: the event's INSERT before the closing
  statement, as before staging (what staging saves).

No model runs (its cost does not depend on the fan-out) and no relay (the rows stay in the
outbox). Printed per reading: this process's CPU (the AI worker's share), PostgreSQL's CPU
(all its processes, read from /proc) and the wall time.

    python benchmarks/fanout.py [-n 4000] [--json FILE]
    python benchmarks/fanout.py --smoke      # a few seconds, to check that it works
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from contextlib import nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.stack import BenchStack, cpu_seconds, cpu_used, postgres_pids  # noqa: E402

WAYS = {
    "without": "without the fan-out",
    "staged": "with the fan-out (as the consumer runs it)",
    "separate": "with the fan-out in a statement of its own",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--readings", type=int, default=4000, help="readings per way (default 4000)")
    parser.add_argument("--block", type=int, default=250, help="readings per block; the ways alternate (default 250)")
    parser.add_argument("--smoke", action="store_true", help="300 readings per way: checks that it works")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    args = parser.parse_args()
    if args.smoke:
        args.readings, args.block = 300, 100
    if args.readings < args.block or args.block < 1:
        parser.error("--readings must be at least --block, and --block at least 1")

    with BenchStack("fanout"):
        from django.db import transaction

        from branches.selectors import helper_branch
        from messaging.consumers import Delivery, claim_and_record
        from messaging.contracts import TaskAnalyzedEvent, TaskSubmittedEvent
        from messaging.events import Envelope
        from messaging.outbox import publish_event, staged_publishes
        from tasks.models import LaundryTask
        from tasks.services import reading_record
        from tests.factories import helper

        user = helper()
        branch = helper_branch(user=user)
        tasks = [LaundryTask.objects.create(branch=branch, helper=user, photo=f"tasks/{i}.jpg", photo_sha256="0" * 64,
                                            photo_size=1, photo_content_type="image/jpeg").pk for i in range(200)]
        labels, confidences = {"garment": "shirt", "condition": "stained"}, {"garment": 0.9, "condition": 0.8}
        delivery = Delivery(queue="task.submitted", worker="bench@fanout")

        def reading(n: int, way: str) -> None:
            task_id = tasks[n % len(tasks)]
            event = TaskSubmittedEvent(task_id=task_id, branch_id=branch.pk, helper_id=user.pk, photo="tasks/x.jpg")
            envelope = Envelope.wrap(event, correlation_id=f"bench-{n}")
            staging = staged_publishes() if way == "staged" else nullcontext()
            with transaction.atomic(), staging as staged:
                reading_record(task_id=task_id, labels=labels, confidences=confidences, model_version="bench",
                               inference_ms=3.0)
                if way != "without":
                    publish_event(TaskAnalyzedEvent(task_id=task_id, branch_id=branch.pk, helper_id=user.pk,
                                                    labels=labels, confidences=confidences, model_version="bench"))
                claim_and_record("bench.ai", envelope, event, delivery, 1.0, staged)

        n = 0
        for _ in range(60 if args.smoke else 300):  # connections, caches
            reading(n, list(WAYS)[n % len(WAYS)])
            n += 1
        totals = {way: {"cpu": 0.0, "postgres": 0.0, "wall": 0.0, "readings": 0} for way in WAYS}
        blocks = args.readings // args.block
        order = list(WAYS)
        for b in range(blocks):
            for way in order[b % len(order):] + order[:b % len(order)]:  # each way first in turn
                pg_before = cpu_seconds(postgres_pids())
                cpu_before, wall_before = time.process_time(), time.perf_counter()
                for _ in range(args.block):
                    reading(n, way)
                    n += 1
                wall, cpu = time.perf_counter() - wall_before, time.process_time() - cpu_before
                total = totals[way]
                total["cpu"] += cpu
                total["postgres"] += cpu_used(pg_before, cpu_seconds(postgres_pids()))
                total["wall"] += wall
                total["readings"] += args.block
            print(f"block {b + 1}/{blocks} done", file=sys.stderr)

    figures = {
        way: {
            "readings": t["readings"],
            "worker_cpu_ms": round(t["cpu"] * 1000 / t["readings"], 3),
            "postgres_cpu_ms": round(t["postgres"] * 1000 / t["readings"], 3),
            "wall_ms": round(t["wall"] * 1000 / t["readings"], 3),
        }
        for way, t in totals.items()
    }
    base = figures["without"]
    print()
    print(f"the AI consumer's statements per reading, {args.readings} readings per way in alternating blocks")
    print(f"{'way':<46} {'worker CPU ms':>13} {'PostgreSQL CPU ms':>17} {'wall ms':>8}")
    for way, label in WAYS.items():
        f = figures[way]
        print(f"{label:<46} {f['worker_cpu_ms']:>13} {f['postgres_cpu_ms']:>17} {f['wall_ms']:>8}")
    for way in ("staged", "separate"):
        f = figures[way]
        f["added"] = {key: round(f[key] - base[key], 3) for key in ("worker_cpu_ms", "postgres_cpu_ms", "wall_ms")}
        print(f"{WAYS[way]} adds: worker CPU {f['added']['worker_cpu_ms']} ms, PostgreSQL CPU "
              f"{f['added']['postgres_cpu_ms']} ms, wall {f['added']['wall_ms']} ms per reading")
    if args.json:
        Path(args.json).write_text(json.dumps({"readings_per_way": args.readings, "smoke": args.smoke,
                                               "ways": figures}, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
