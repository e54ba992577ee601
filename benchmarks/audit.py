#!/usr/bin/env python
"""The audit subscriber's throughput: can it keep up with every event at the full upload rate?

Every upload makes two events (TaskSubmittedEvent, then the AI's TaskAnalyzedEvent), so at the
seed's AI rate (3 AI consumers, >= 60 tasks/s) the `audit` queue receives >= 120 events/s. This
publishes `-n` TaskSubmittedEvents through the outbox (one transaction, as the AI benchmark
does) with the audit pool as the Procfile runs it (`worker-audit`, concurrency 2) consuming;
the clock runs from the first publish to the last row of the event log. The events also land
in `task.submitted` (the AI's copy, not consumed here): fan-out costs the publisher nothing,
RabbitMQ makes the copies.

Runs against the real PostgreSQL and RabbitMQ in a database and a virtual host of its own.

    python benchmarks/audit.py [-n 2000] [--concurrency 2] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.stack import ROOT, BenchStack, celery_worker, percentile  # noqa: E402
from tests import processes  # noqa: E402

UPLOADS_PER_S = 60  # the seed's AI target: the full upload rate the AI path is sized for
EVENTS_PER_UPLOAD = 2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--events", type=int, default=2000, help="events to publish (default 2000)")
    parser.add_argument("--concurrency", type=int, default=2, help="audit worker processes (default 2, the Procfile's)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    args = parser.parse_args()
    if args.events < 1 or args.concurrency < 1:
        parser.error("--events and --concurrency must be at least 1")

    with BenchStack("audit") as stack:
        from django.db import transaction

        from audit.models import EventLogEntry
        from messaging.contracts import TaskSubmittedEvent
        from messaging.outbox import publish_event

        worker = processes.spawn(
            celery_worker("audit", "audit-bench", concurrency=args.concurrency, loglevel="WARNING"),
            cwd=ROOT, env=stack.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        relay = processes.spawn(
            [sys.executable, "manage.py", "relay_outbox", "--interval", "0.5"], cwd=ROOT, env=stack.env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(6)  # let the worker start
            print(f"publishing {args.events} events to the audit pool ({args.concurrency} processes)",
                  file=sys.stderr)
            started = time.time()
            with transaction.atomic():
                for i in range(args.events):
                    publish_event(TaskSubmittedEvent(task_id=i + 1, branch_id=1, helper_id=1,
                                                     photo=f"tasks/bench/{i}.jpg"), correlation_id=f"bench-{i}")
            published = time.time()
            deadline = started + 600
            done = 0
            while time.time() < deadline:
                done = EventLogEntry.objects.count()
                if done >= args.events:
                    break
                time.sleep(0.2)
            rows = list(EventLogEntry.objects.values_list("occurred_at", "recorded_at"))
        finally:
            processes.terminate_all([worker, relay], 60)

    finished = max(recorded.timestamp() for _, recorded in rows) if rows else time.time()
    wall = finished - started
    rate = done / wall if wall > 0 else 0.0
    lags = [(recorded - occurred).total_seconds() for occurred, recorded in rows]
    needed = UPLOADS_PER_S * EVENTS_PER_UPLOAD
    figures = {
        "events": args.events,
        "events_recorded": done,
        "audit_processes": args.concurrency,
        "events_per_s": round(rate, 1),
        "publish_seconds": round(published - started, 2),
        "wall_seconds": round(wall, 2),
        "lag_p50_s": round(percentile(lags, 50), 3) if lags else None,
        "lag_p99_s": round(percentile(lags, 99), 3) if lags else None,
        "needed_events_per_s": needed,
        "keeps_up": rate >= needed,
    }
    print()
    print(f"{'measure':<58} {'value':>10}")
    print(f"{'audit subscriber, events/s (published -> in the event log)':<58} {rate:>10.1f}")
    print(f"{'published in, s':<58} {figures['publish_seconds']:>10}")
    print(f"{'lag occurred -> recorded, p50 s':<58} {figures['lag_p50_s']!s:>10}")
    print(f"{'lag occurred -> recorded, p99 s':<58} {figures['lag_p99_s']!s:>10}")
    print(f"{'events recorded / published':<58} {done:>5}/{args.events}")
    print()
    print(f"needed at the full upload rate: {UPLOADS_PER_S} uploads/s x {EVENTS_PER_UPLOAD} events = {needed} "
          f"events/s -> {'keeps up' if rate >= needed else 'falls behind'}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0 if done == args.events else 1


if __name__ == "__main__":
    sys.exit(main())
