#!/usr/bin/env python
"""Publish latency through the transactional outbox (docs/decisions.md, verification plan: "1000 events, <= 10 ms").

Each event is published the way a request publishes it: one database transaction that
writes the outbox row, then, on commit, the confirmed publish to a quorum queue and the
row's update. Two baselines run side by side, interleaved in rounds so machine noise
hits all three alike: a bare confirmed publish (no database) and a bare outbox insert
(no broker).

Runs against the real PostgreSQL and RabbitMQ in a database and a virtual host of its
own, both removed at the end, so a running `make run` is not disturbed.

    python benchmarks/publish.py [-n 1000] [--rounds 10] [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.stack import BenchStack, percentile  # noqa: E402


def summarise(latencies_s: list[float], wall_s: float) -> dict:
    ms = [v * 1000 for v in latencies_s]
    return {
        "events": len(ms),
        "mean_ms": round(statistics.fmean(ms), 3),
        "p50_ms": round(percentile(ms, 50), 3),
        "p99_ms": round(percentile(ms, 99), 3),
        "max_ms": round(max(ms), 3),
        "events_per_s": round(len(ms) / wall_s, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--events", type=int, default=1000, help="events per mode (default: 1000)")
    parser.add_argument("--rounds", type=int, default=10, help="interleaved rounds (default: 10)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    args = parser.parse_args()
    if args.events < args.rounds or args.rounds < 1:
        parser.error("--events must be at least --rounds, and --rounds at least 1")

    with BenchStack("publish"):
        from django.db import transaction

        from messaging.broker import publish_envelope
        from messaging.contracts import TaskSubmittedEvent
        from messaging.events import Envelope
        from messaging.models import OutboxMessage
        from messaging.outbox import publish_event

        def event(i: int) -> TaskSubmittedEvent:
            return TaskSubmittedEvent(task_id=i + 1, branch_id=1, helper_id=1, photo=f"tasks/{i}.jpg")

        def full_path(i: int) -> None:
            with transaction.atomic():
                publish_event(event(i))

        def bare_publish(i: int) -> None:
            publish_envelope("task.submitted", Envelope.wrap(event(i), correlation_id=None).as_message_body())

        def bare_insert(i: int) -> None:
            envelope = Envelope.wrap(event(i), correlation_id=None)
            with transaction.atomic():
                OutboxMessage.objects.create(
                    event_id=envelope.event_id, event_type=envelope.event_type, schema_version=1,
                    queue="task.submitted", envelope=envelope.as_message_body(), published_at=None,
                )

        modes = {
            "publish_event (outbox + confirmed publish)": full_path,
            "confirmed publish only (no database)": bare_publish,
            "outbox insert only (no broker)": bare_insert,
        }
        for mode in modes.values():  # warm up connections and caches
            for i in range(20):
                mode(i)
        latencies = {name: [] for name in modes}
        walls = dict.fromkeys(modes, 0.0)
        per_round = args.events // args.rounds
        for round_no in range(args.rounds):
            for name, mode in modes.items():
                started_round = time.perf_counter()
                for i in range(per_round):
                    started = time.perf_counter()
                    mode(round_no * per_round + i)
                    latencies[name].append(time.perf_counter() - started)
                walls[name] += time.perf_counter() - started_round
            print(f"  round {round_no + 1}/{args.rounds} done", file=sys.stderr)

        unpublished = OutboxMessage.objects.filter(published_at__isnull=True, envelope__has_key="event_id")
        stranded = unpublished.count() - (args.rounds * per_round + 20)  # bare inserts stay unpublished
        results = {name: summarise(latencies[name], walls[name]) for name in modes}

    main_figures = results["publish_event (outbox + confirmed publish)"]
    floor = results["confirmed publish only (no database)"]
    print()
    print(f"{'mode':<44} {'events':>7} {'mean ms':>8} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'events/s':>9}")
    for name, r in results.items():
        print(
            f"{name:<44} {r['events']:>7} {r['mean_ms']:>8.3f} {r['p50_ms']:>8.3f} {r['p99_ms']:>8.3f} "
            f"{r['max_ms']:>8.3f} {r['events_per_s']:>9.1f}"
        )
    ratio = main_figures["p50_ms"] / floor["p50_ms"]
    verdict = "PASS" if main_figures["mean_ms"] <= 10 else "FAIL"
    print()
    print(f"seed target: average publish <= 10 ms -> {main_figures['mean_ms']:.3f} ms  {verdict}")
    print(f"publish_event p50 is {ratio:.2f}x a bare confirmed publish; events left unpublished: {stranded}")
    if args.json:
        payload = {
            **{k: main_figures[k] for k in ("mean_ms", "p50_ms", "p99_ms", "events_per_s")},
            "events": main_figures["events"],
            "target_mean_ms": 10,
            "meets_target": main_figures["mean_ms"] <= 10,
            "p50_ratio_to_bare_confirmed_publish": round(ratio, 2),
            "unpublished_after_run": stranded,
            "modes": results,
        }
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0 if stranded == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
