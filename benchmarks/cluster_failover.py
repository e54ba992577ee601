#!/usr/bin/env python
"""Losing a RabbitMQ node: the leader of `task.submitted` is stopped while tasks flow.

On the local three-node cluster (scripts/rabbitmq-cluster.sh; started if it is not
running), with every quorum queue replicated on the three nodes and every process given
the three nodes' URLs (Celery's failover):

1. tasks are accepted continuously (each committed with its outbox event, as `task_submit`
   does, and published by the relay) while AI workers read them;
2. after --before seconds, the node that leads `task.submitted` is stopped;
3. after --down seconds it is started again; tasks keep coming for --after seconds;
4. the publisher stops and the workers drain the queue.

Reported: tasks accepted, events confirmed by RabbitMQ (outbox rows the relay published),
tasks read, lost (accepted and never read), duplicate effects (an event
whose handler committed twice, from the workers' logs; a redelivery skipped as already
processed is counted apart), the leader before and after, and the longest pause in
consumption (the largest gap between two consecutive readings).

    python benchmarks/cluster_failover.py [--rate 8] [--before 20] [--down 30] [--after 20] [--no-spread] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.stack import ROOT, BenchStack, ai_worker  # noqa: E402
from tests import processes  # noqa: E402

SCRIPT = ROOT / "scripts" / "rabbitmq-cluster.sh"
_PROCESSED = re.compile(r"processed in [\d.]+ ms event_id=(\S+)")
_SKIPPED = re.compile(r"skipped: already processed event_id=(\S+)")


class LocalCluster:
    """The three nodes of scripts/rabbitmq-cluster.sh, as BenchStack's `node`."""

    def __init__(self):
        self.down: set[int] = set()

    def script(self, *args: str, timeout: float = 300) -> str:
        result = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"rabbitmq-cluster.sh {' '.join(args)}: {result.stderr.strip()[-800:]}")
        return result.stdout

    def running_node(self) -> int:
        return next(n for n in (1, 2, 3) if n not in self.down)

    def ctl(self, *args: str) -> str:
        return self.script("ctl", str(self.running_node()), *args)

    def vhost_url(self, vhost: str) -> str:
        return self.broker_url(vhost).split(";")[0]

    def broker_url(self, vhost: str) -> str:
        return self.script("url", vhost).strip()

    def leader(self, vhost: str, queue: str) -> int:
        out = self.ctl("-q", "list_queues", "-p", vhost, "name", "leader", "--no-table-headers")
        for line in out.splitlines():
            name, _, leader = line.partition("\t")
            if name.strip() == queue:
                return int(re.search(r"fitness-c(\d)@", leader).group(1))
        raise RuntimeError(f"no leader found for {queue}: {out}")

    def queue_messages(self, vhost: str, queue: str) -> int:
        """Messages in a queue, ready and unacked."""
        out = self.ctl("-q", "list_queues", "-p", vhost, "name", "messages", "--no-table-headers")
        for line in out.splitlines():
            name, _, count = line.partition("\t")
            if name.strip() == queue:
                return int(count)
        raise RuntimeError(f"no queue {queue} in {vhost}")

    def stop(self, n: int) -> None:
        self.script("stop-node", str(n))
        self.down.add(n)

    def start(self, n: int) -> None:
        self.script("start-node", str(n))
        self.down.discard(n)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=8, help="tasks accepted per second (default 8)")
    parser.add_argument("--workers", type=int, default=2, help="AI worker processes (default 2)")
    parser.add_argument("--before", type=float, default=20, help="seconds of steady flow before the stop")
    parser.add_argument("--down", type=float, default=30, help="seconds the leader node stays down")
    parser.add_argument("--after", type=float, default=20, help="seconds of flow after it is back")
    parser.add_argument("--no-spread", action="store_true",
                        help="every client lists the nodes in the same order (all connect to the first one)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    args = parser.parse_args()

    cluster = LocalCluster()
    print("making sure the three-node cluster is up (scripts/rabbitmq-cluster.sh up)", file=sys.stderr)
    cluster.script("up", timeout=900)
    with BenchStack("failover", node=cluster) as stack:
        figures = run(stack, cluster, args)
    print_table(figures)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {args.json}")
    print("\nthe cluster stays up; `scripts/rabbitmq-cluster.sh down` stops it")
    return 0 if figures["lost"] == 0 and figures["duplicate_effects"] == 0 else 1


def run(stack: BenchStack, cluster: LocalCluster, args) -> dict:
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage
    from django.core.management import call_command
    from django.db import connection, transaction

    from benchmarks.ai_throughput import bench_photo
    from messaging.contracts import TaskSubmittedEvent
    from messaging.models import OutboxMessage
    from messaging.outbox import publish_event
    from tasks.models import LaundryTask, Reading
    from tests.factories import helper

    say = lambda line: print(line, file=sys.stderr)  # noqa: E731
    call_command("train_model", "--per-class", "2", "--epochs", "1", stdout=open(os.devnull, "w"))
    photo = bench_photo()
    photo_name = default_storage.save("tasks/bench/photo.jpg", ContentFile(photo))
    user = helper()
    branch = user.helper.branch
    logs = ROOT / "var" / "bench-logs" / f"cluster-failover-{stack.run}"
    logs.mkdir(parents=True)
    say(f"logs in {logs}")
    urls = stack.env["CELERY_BROKER_URL"].split(";")

    def rotated(i: int) -> str:
        # each client starts at another node, as a load balancer in front of a cluster spreads them
        shift = 0 if args.no_spread else i % len(urls)
        return ";".join(urls[shift:] + urls[:shift])

    def worker(i: int) -> subprocess.Popen:
        with open(logs / f"worker-{i}.log", "ab") as out:
            return processes.spawn(
                ai_worker(f"ai-failover-{i}"),
                cwd=ROOT, env=dict(stack.env, ML_PRELOAD="1", TORCH_NUM_THREADS="1", CELERY_BROKER_URL=rotated(i)),
                stdout=out, stderr=subprocess.STDOUT,
            )

    started_processes = [worker(i) for i in range(args.workers)]
    with open(logs / "relay.log", "ab") as out:
        started_processes.append(processes.spawn(
            [sys.executable, "manage.py", "relay_outbox", "--interval", "0.5"], cwd=ROOT,
            env=dict(stack.env, CELERY_BROKER_URL=rotated(args.workers), LOG_LEVEL="INFO"),
            stdout=out, stderr=subprocess.STDOUT,
        ))
    accepted: list[int] = []
    stop = threading.Event()

    def accept_steadily() -> None:
        interval = 1 / args.rate
        next_at = time.monotonic()
        while not stop.is_set():
            with transaction.atomic():
                task = LaundryTask.objects.create(
                    branch=branch, helper=user, photo=photo_name, photo_sha256="0" * 64, photo_size=len(photo),
                    photo_content_type="image/jpeg",
                )
                publish_event(TaskSubmittedEvent(task_id=task.pk, branch_id=branch.pk, helper_id=user.pk,
                                                 photo=photo_name))
            accepted.append(task.pk)
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
        connection.close()

    try:
        time.sleep(10)  # the workers load torch and the model
        leader_before = cluster.leader(stack.vhost, "task.submitted")
        say(f"task.submitted is led by fitness-c{leader_before}; accepting {args.rate:g} tasks/s")
        publisher = threading.Thread(target=accept_steadily, daemon=True)
        started = time.time()
        publisher.start()
        time.sleep(args.before)
        say(f"stopping fitness-c{leader_before} at {time.strftime('%H:%M:%S')}")
        stopped_at = time.time()
        cluster.stop(leader_before)
        stopped_done = time.time()
        leader_during = cluster.leader(stack.vhost, "task.submitted")
        say(f"new leader: fitness-c{leader_during}")
        time.sleep(max(0.0, args.down - (time.time() - stopped_at)))
        say(f"starting fitness-c{leader_before} again")
        cluster.start(leader_before)
        restarted_at = time.time()
        time.sleep(args.after)
        stop.set()
        publisher.join(timeout=30)
        ended_at = time.time()
        say(f"{len(accepted)} tasks accepted; waiting until the workers have read them or the queue is empty")
        drain(cluster, stack.vhost, lambda: Reading.objects.filter(task_id__in=accepted).count(), len(accepted))
        leader_after = cluster.leader(stack.vhost, "task.submitted")
    finally:
        processes.terminate_all(started_processes, 60)

    read_times = sorted(
        t.timestamp() for t in Reading.objects.filter(task_id__in=accepted).values_list("created_at", flat=True)
    )
    window = [t for t in read_times if started <= t <= ended_at]
    gaps = [(b - a, a) for a, b in zip(window, window[1:], strict=False)]
    longest, longest_at = max(gaps) if gaps else (0.0, started)
    processed, skipped = Counter(), Counter()
    for log in logs.glob("worker-*.log"):
        text = log.read_text(errors="replace")
        processed.update(_PROCESSED.findall(text))
        skipped.update(_SKIPPED.findall(text))
    confirmed = OutboxMessage.objects.filter(published_at__isnull=False, event_type="TaskSubmittedEvent").count()
    read = len(read_times)
    return {
        "rate_per_s": args.rate,
        "clients_spread_over_nodes": not args.no_spread,
        "ai_workers": args.workers,
        "accepted": len(accepted),
        "confirmed": confirmed,
        "read": read,
        "lost": len(accepted) - read,
        "duplicate_effects": sum(count - 1 for count in processed.values() if count > 1),
        "redeliveries_skipped": sum(skipped.values()),
        "leader_before": f"fitness-c{leader_before}",
        "leader_while_down": f"fitness-c{leader_during}",
        "leader_after": f"fitness-c{leader_after}",
        "node_stop_seconds": round(stopped_done - stopped_at, 1),
        "longest_pause_s": round(longest, 2),
        "longest_pause_starts_after_stop_s": round(longest_at - stopped_at, 1),
        "node_down_seconds": round(restarted_at - stopped_at, 1),
    }


def drain(cluster: LocalCluster, vhost: str, read_count, wanted: int, *, limit: float = 1800) -> None:
    """Wait until every task is read, or nothing is left to read: the queue holds no message
    (ready or unacked) and no reading has been stored for 30 s. Then `lost` means lost."""
    deadline = time.time() + limit
    last, last_change = -1, time.time()
    while time.time() < deadline:
        count = read_count()
        if count >= wanted:
            return
        if count != last:
            last, last_change = count, time.time()
        elif time.time() - last_change > 30 and cluster.queue_messages(vhost, "task.submitted") == 0:
            return
        time.sleep(2)
    print(f"gave up waiting after {limit:.0f} s", file=sys.stderr)


def print_table(figures: dict) -> None:
    rows = [
        ("tasks accepted (committed with their event)", figures["accepted"]),
        ("events confirmed by RabbitMQ (published by the relay)", figures["confirmed"]),
        ("tasks read by the AI workers", figures["read"]),
        ("lost (accepted, never read)", figures["lost"]),
        ("duplicate effects (handler committed twice)", figures["duplicate_effects"]),
        ("redeliveries skipped as already processed", figures["redeliveries_skipped"]),
        ("leader of task.submitted: before / while down / after",
         f"{figures['leader_before']} / {figures['leader_while_down']} / {figures['leader_after']}"),
        ("node down for, s", figures["node_down_seconds"]),
        ("longest pause in consumption, s", figures["longest_pause_s"]),
        ("  it began this long after the stop, s", figures["longest_pause_starts_after_stop_s"]),
    ]
    width = max(len(name) for name, _ in rows)
    print()
    print(f"{'measure':<{width}}  value")
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print("\ngoal: 0 lost, 0 duplicate effects, longest pause under 10 s")


if __name__ == "__main__":
    sys.exit(main())
