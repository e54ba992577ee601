#!/usr/bin/env python
"""Publishing through the transactional outbox: the caller's cost, commit → queue, the relay's rate.

The verification plan's "1000 events, <= 10 ms" (docs/decisions.md) and issue 15's goals.

Each event is published the way a request publishes it: one database transaction that
writes the outbox row (and its NOTIFY), then the commit. The relay (`manage.py
relay_outbox`, as the Procfile runs it) is the one publisher; a consumer process of its own
takes the messages off the queue and notes when each arrived. Reported, with RabbitMQ
free and again while a memory alarm blocks it:

- the caller's `publish_event` time (insert and commit), p50 and p99, for N events;
- commit → message in the queue (the consumer's arrival time minus the caller's commit
  time, one clock), p50 and p99; while blocked, from the moment the alarm clears;
- the relay's throughput draining a backlog of B rows committed at once (one NOTIFY);
  while blocked, the drain after the alarm clears, and how long the relay took to resume.

Runs on a RabbitMQ node of its own (tests/rabbitmq_node.py: its memory alarm is raised with
`rabbitmqctl set_vm_memory_high_watermark 0`), with a database and vhost of its own, all
removed at the end, so a running `make run` is not disturbed.

    python benchmarks/publish.py [-n 1000] [--backlog 50000] [--blocked-seconds 10] [--relays 1] [--smoke] [--json FILE]

`--relays 2` runs two relays, as Kubernetes does: every NOTIFY wakes both, and one claims
the rows committed while the other waits for its confirms (SKIP LOCKED).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.stack import BenchStack, percentile  # noqa: E402
from tests import processes  # noqa: E402
from tests.rabbitmq_node import RabbitMQNode, available  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
QUEUE = "task.submitted"  # the timed events; nothing else consumes it here
BACKLOG_QUEUE = "task.confirmed"  # the backlog's rows: counted in the database, not consumed

# A consumer of its own (py-amqp, no_ack): one line per message, its event_id and arrival time.
CONSUMER = r"""
import sys, time
from kombu import Connection
out = open(sys.argv[3], "a", buffering=1)
with Connection(sys.argv[1]) as conn:
    channel = conn.channel()
    channel.basic_qos(0, 2000, False)
    def arrived(message):
        out.write(f"{message.headers['event_id']} {time.time():.6f}\n")
    channel.basic_consume(sys.argv[2], no_ack=True, callback=arrived)
    print("consuming", flush=True)
    while True:
        conn.drain_events()
"""


class Consumer:
    def __init__(self, url: str, path: Path):
        self.path = path
        path.write_text("")
        self.process = processes.spawn([sys.executable, "-c", CONSUMER, url, QUEUE, str(path)], cwd=ROOT,
                                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        line = self.process.stdout.readline()
        if "consuming" not in line:
            raise RuntimeError(f"the consumer did not start: {line}{self.process.stdout.read()}")

    def arrivals(self) -> dict[str, float]:
        found = {}
        for line in self.path.read_text().splitlines():
            event_id, _, at = line.partition(" ")
            if at:
                found[event_id] = float(at)
        return found

    def wait_for(self, ids, timeout: float) -> dict[str, float]:
        wanted = set(ids)
        deadline = time.monotonic() + timeout
        while True:
            found = self.arrivals()
            if wanted <= found.keys() or time.monotonic() > deadline:
                return {k: v for k, v in found.items() if k in wanted}
            time.sleep(0.1)

    def stop(self) -> None:
        processes.terminate(self.process, 10)


def ms(values: list[float]) -> dict:
    values = [v * 1000 for v in values]
    if not values:
        return {"p50_ms": None, "p99_ms": None, "mean_ms": None, "count": 0}
    return {"p50_ms": round(percentile(values, 50), 3), "p99_ms": round(percentile(values, 99), 3),
            "mean_ms": round(statistics.fmean(values), 3), "count": len(values)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--events", type=int, default=1000, help="timed events per phase (default: 1000)")
    parser.add_argument("--backlog", type=int, default=50_000, help="rows of the backlog drained (default: 50000)")
    parser.add_argument("--blocked-seconds", type=float, default=10.0,
                        help="how long the memory alarm stays raised after the blocked phase's events (default: 10)")
    parser.add_argument("--relays", type=int, default=1, help="relay processes running (default: 1; Kubernetes runs 2)")
    parser.add_argument("--smoke", action="store_true", help="small sizes: 100 events, a backlog of 2000, 3 s blocked")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    args = parser.parse_args()
    if args.smoke:
        args.events, args.backlog, args.blocked_seconds = 100, 2000, 3.0
    if args.events < 1 or args.backlog < 1 or args.blocked_seconds < 0 or args.relays < 1:
        parser.error("--events, --backlog and --relays must be positive, --blocked-seconds not negative")
    reason = available()
    if reason:
        print(f"publish.py needs a private RabbitMQ node (its memory alarm is raised): {reason}", file=sys.stderr)
        return 2

    with RabbitMQNode() as node, BenchStack("publish", node=node) as stack:
        from django.db import connection, transaction

        from fitness import topology
        from messaging.contracts import TaskSubmittedEvent
        from messaging.events import Envelope
        from messaging.models import OutboxMessage
        from messaging.outbox import OUTBOX_CHANNEL, publish_event
        from tests.support import CommandProcess

        table = OutboxMessage._meta.db_table
        log_dir = stack.media / "logs"
        relays = [CommandProcess("relay_outbox", name=f"relay{n + 1}", log_dir=log_dir, ready="outbox relay started",
                                 DJANGO_SETTINGS_MODULE="fitness.settings") for n in range(args.relays)]
        consumer = Consumer(stack.env["CELERY_BROKER_URL"], stack.media / "arrivals.txt")

        def event(i: int) -> TaskSubmittedEvent:
            return TaskSubmittedEvent(task_id=i + 1, branch_id=1, helper_id=1, photo=f"tasks/{i}.jpg")

        def timed_events(n: int, offset: int) -> tuple[list[float], dict[str, float]]:
            """Publish n events, one transaction each: the caller's times and each event's commit time."""
            took, committed = [], {}
            for i in range(n):
                started = time.perf_counter()
                with transaction.atomic():
                    message = publish_event(event(offset + i))
                took.append(time.perf_counter() - started)
                committed[str(message.event_id)] = time.time()
            return took, committed

        def commit_backlog(n: int) -> float:
            """n rows written by PostgreSQL itself and committed at once (one NOTIFY); the commit's time."""
            body = Envelope.wrap(event(0), correlation_id=None).as_message_body()
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.execute(
                    f"INSERT INTO {table} (event_id, event_type, schema_version, queue, envelope, created_at,"
                    f" publish_attempts, last_error, refusals, retried_by, discarded_by, discard_reason)"
                    f" SELECT u, %s, 1, %s, jsonb_set(%s::jsonb, '{{event_id}}', to_jsonb(u::text)), now(),"
                    f" 0, '', 0, '', '', '' FROM (SELECT gen_random_uuid() AS u FROM generate_series(1, %s)) ids;"
                    f" SELECT pg_notify(%s, '')",
                    ["TaskSubmittedEvent", BACKLOG_QUEUE, json.dumps(body), n, OUTBOX_CHANNEL],
                )
            return time.time()

        def unpublished() -> int:
            return OutboxMessage.objects.filter(published_at__isnull=True).count()

        def drained(since: float, timeout: float) -> dict:
            """Wait until the outbox is empty; the relay's rate from `since` (a commit or the alarm's end)."""
            deadline = time.monotonic() + timeout
            while unpublished() and time.monotonic() < deadline:
                time.sleep(0.2)
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT count(*), extract(epoch FROM min(published_at)),"
                               f" extract(epoch FROM max(published_at)) FROM {table}"
                               f" WHERE queue = %s AND published_at IS NOT NULL", [BACKLOG_QUEUE])
                count, first, last = cursor.fetchone()
            left = unpublished()
            seconds = float(last) - since if count else None
            return {"rows": count, "left": left, "seconds": round(seconds, 3) if seconds else None,
                    "events_per_s": round(count / seconds, 1) if seconds else None,
                    "first_publish_after_s": round(float(first) - since, 3) if count else None}

        def purge_backlog() -> None:
            from tests.support import broker_connection

            with broker_connection() as conn:
                conn.default_channel.queue_purge(BACKLOG_QUEUE)
            OutboxMessage.objects.filter(queue=BACKLOG_QUEUE).delete()

        assert QUEUE in {queue.name for queue in topology.subscribers_of("TaskSubmittedEvent")}
        results: dict = {}
        for relay in relays:
            relay.start(timeout=180)
        try:
            # --- RabbitMQ free ------------------------------------------------------------------
            warm, committed = timed_events(20, 0)  # connections, caches, the relay's broker connection
            consumer.wait_for(committed, 60)
            print(f"free: {args.events} events", file=sys.stderr)
            took, committed = timed_events(args.events, 1000)
            arrived = consumer.wait_for(committed, 120)
            latency = [arrived[k] - committed[k] for k in arrived]
            print(f"free: a backlog of {args.backlog} rows", file=sys.stderr)
            backlog = drained(commit_backlog(args.backlog), timeout=600)
            purge_backlog()
            results["free"] = {"caller": ms(took), "commit_to_queue": ms(latency),
                               "lost": len(committed) - len(arrived), "backlog": backlog}

            # --- RabbitMQ blocked by a memory alarm -------------------------------------------------
            node.ctl("set_vm_memory_high_watermark", "0")
            deadline = time.monotonic() + 30
            while "Memory alarm on node" not in node.ctl("status") and time.monotonic() < deadline:
                time.sleep(0.2)
            print(f"blocked: {args.events} events and a backlog of {args.backlog} rows", file=sys.stderr)
            took_blocked, committed_blocked = timed_events(args.events, 1_000_000)
            commit_backlog(args.backlog)
            time.sleep(args.blocked_seconds)
            reached_while_blocked = len(consumer.wait_for(committed_blocked, 0))
            node.ctl("set_vm_memory_high_watermark", "0.4")
            cleared = time.time()
            print("blocked: the alarm cleared, the relay catches up", file=sys.stderr)
            backlog_blocked = drained(cleared, timeout=900)
            arrived = consumer.wait_for(committed_blocked, 120)
            after_clear = [arrived[k] - cleared for k in arrived]
            purge_backlog()
            results["blocked"] = {
                "caller": ms(took_blocked), "reached_queue_while_blocked": reached_while_blocked,
                "commit_to_queue_after_the_alarm_cleared": ms(after_clear),
                "lost": len(committed_blocked) - len(arrived), "backlog": backlog_blocked,
                "blocked_seconds": args.blocked_seconds,
            }
        finally:
            node.ctl("set_vm_memory_high_watermark", "0.4")
            for relay in relays:
                relay.stop()
            consumer.stop()
        stranded = unpublished()

    free, blocked = results["free"], results["blocked"]

    def cell(value, fmt="{:.2f}"):
        return "-" if value is None else fmt.format(value)

    print()
    print(f"{args.relays} relay(s)")
    print(f"{'figure':<64} {'RabbitMQ free':>16} {'blocked (alarm)':>16} {'goal':>12}")
    table = [
        ("publish_event, insert + commit: p50 ms", free["caller"]["p50_ms"], blocked["caller"]["p50_ms"], "< 1.5"),
        ("publish_event, insert + commit: p99 ms", free["caller"]["p99_ms"], blocked["caller"]["p99_ms"], ""),
        ("commit -> in the queue: p50 ms (blocked: from the alarm's end)",
         free["commit_to_queue"]["p50_ms"], blocked["commit_to_queue_after_the_alarm_cleared"]["p50_ms"], "< 5"),
        ("commit -> in the queue: p99 ms", free["commit_to_queue"]["p99_ms"],
         blocked["commit_to_queue_after_the_alarm_cleared"]["p99_ms"], "< 20"),
        (f"relay, backlog of {args.backlog}: events/s", free["backlog"]["events_per_s"],
         blocked["backlog"]["events_per_s"], ">= 5000"),
        ("relay's first publish after the commit / the alarm's end: s", free["backlog"]["first_publish_after_s"],
         blocked["backlog"]["first_publish_after_s"], ""),
    ]
    for name, a, b, goal in table:
        print(f"{name:<64} {cell(a):>16} {cell(b):>16} {goal:>12}")
    print()
    print(f"events that reached the queue while RabbitMQ was blocked ({args.blocked_seconds:g} s): "
          f"{blocked['reached_queue_while_blocked']} of {args.events}; lost: {free['lost'] + blocked['lost']}; "
          f"left unpublished: {stranded}")
    caller = free["caller"]
    verdict = "PASS" if caller["mean_ms"] <= 10 else "FAIL"
    print(f"verification plan target: average publish <= 10 ms -> {caller['mean_ms']:.3f} ms  {verdict}")
    if args.json:
        payload = {
            **{k: caller[k] for k in ("mean_ms", "p50_ms", "p99_ms")},
            "events": args.events,
            "relays": args.relays,
            "target_mean_ms": 10,
            "meets_target": caller["mean_ms"] <= 10,
            "commit_to_queue_p50_ms": free["commit_to_queue"]["p50_ms"],
            "commit_to_queue_p99_ms": free["commit_to_queue"]["p99_ms"],
            "relay_events_per_s": free["backlog"]["events_per_s"],
            "blocked_caller_p50_ms": blocked["caller"]["p50_ms"],
            "blocked_caller_p99_ms": blocked["caller"]["p99_ms"],
            "lost": free["lost"] + blocked["lost"],
            "unpublished_after_run": stranded,
            "phases": results,
        }
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0 if stranded == 0 and free["lost"] + blocked["lost"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
