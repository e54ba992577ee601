#!/usr/bin/env python
"""Fault alert latency while the AI pool is busy: telemetry POST → push at the FCM server.

The whole path runs as in production: gunicorn (the Procfile's `web`) takes a telemetry
POST with an error code, opens the fault and commits its event to the outbox, the relay
publishes it, the `worker-alerts` pool (2 processes, PUSH_BACKEND=fcm) pushes through the real
firebase-admin SDK to a local server that speaks the FCM v1 and OAuth endpoints, and
the clock stops when the push request arrives there. Meanwhile N AI messages (default
10,000) wait in `task.submitted` and the AI pool (three `worker-ai` processes) works on
them, so the machine's cores are busy too.

Runs in a private database and vhost (removed at the end).

    python benchmarks/alert_latency.py [--faults 200] [--backlog 10000] [--rate 10] [--json FILE]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.stack import ROOT, BenchStack, ai_worker, celery_worker, percentile  # noqa: E402
from tests import processes  # noqa: E402

PORT = int(os.environ.get("BENCH_PORT", "8766"))


def wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)
    return result


def fill_ai_backlog(count: int) -> None:
    """Commit `count` tasks and publish their TaskSubmittedEvent straight to the queue."""
    from django.core.files.base import ContentFile
    from django.core.files.storage import default_storage

    from benchmarks.ai_throughput import bench_photo
    from messaging.broker import publish_envelope
    from messaging.contracts import TaskSubmittedEvent
    from messaging.events import Envelope
    from tasks.models import LaundryTask
    from tests.factories import helper

    photo = bench_photo()
    name = default_storage.save("tasks/bench/photo.jpg", ContentFile(photo))
    user = helper()
    tasks = LaundryTask.objects.bulk_create(
        LaundryTask(branch=user.helper.branch, helper=user, photo=name, photo_sha256="0" * 64,
                    photo_size=len(photo), photo_content_type="image/jpeg")
        for _ in range(count)
    )
    for task in tasks:
        event = TaskSubmittedEvent(task_id=task.pk, branch_id=task.branch_id, helper_id=user.pk, photo=name)
        publish_envelope("task.submitted", Envelope.wrap(event, correlation_id="bench").as_message_body())


def start(command: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return processes.spawn(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def post_reading(key: str) -> int:
    body = json.dumps({"recorded_at": datetime.now(UTC).isoformat(), "error_code": "E21", "temperature_c": 41.5,
                       "vibration_g": 0.3, "door_open": False, "cycle_state": "washing"})
    conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
    try:
        conn.request("POST", "/api/v1/equipment/telemetry/", body=body,
                     headers={"Content-Type": "application/json", "X-Equipment-Key": key})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--faults", type=int, default=200, help="faults to raise, one machine each (default 200)")
    parser.add_argument("--backlog", type=int, default=10_000, help="AI messages waiting (default 10000)")
    parser.add_argument("--rate", type=float, default=10.0, help="telemetry POSTs per second (default 10)")
    parser.add_argument("--ai-workers", type=int, default=3, help="AI worker processes (default 3)")
    parser.add_argument("--alert-workers", type=int, default=2, help="worker-alerts processes (default 2)")
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn sync workers (default 2)")
    parser.add_argument("--ai-nice", type=int, default=10,
                        help="run the AI workers at this nice level (default 10: the Procfile's AI_NICE; 0 for none)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    args = parser.parse_args()

    with BenchStack("alerts") as stack:
        from django.core.management import call_command

        from monitoring.services import equipment_create
        from notifications.services import device_register
        from tasks.models import Reading
        from tests import factories
        from tests.notifications.fcm_server import FcmServer
        from tests.support import queue_depth

        logs = ROOT / "var" / "bench-logs" / stack.run  # kept after the run, for a look at the workers
        logs.mkdir(parents=True)
        print(f"process logs in {logs}", file=sys.stderr)
        fcm = FcmServer().start()
        push_env = dict(stack.env, PUSH_BACKEND="fcm", FCM_ENDPOINT_URL=fcm.url,
                        FCM_CREDENTIALS_FILE=str(fcm.service_account_file(stack.media)))

        print("training a model version for the AI workers", file=sys.stderr)
        call_command("train_model", "--per-class", "2", "--epochs", "1", stdout=open(os.devnull, "w"))
        owner = factories.user(staff=True)
        branch = factories.branch(owner=owner)
        device_register(user=owner, token="owner-phone", platform="android")
        keys = {}
        for i in range(args.faults):
            machine, key = equipment_create(branch=branch, kind="washer", name=f"washer-{i + 1}")
            keys[machine.pk] = key
        print(f"publishing {args.backlog} AI messages to task.submitted", file=sys.stderr)
        fill_ai_backlog(args.backlog)

        started_processes = [start([sys.executable, "-m", "gunicorn", "fitness.wsgi", "--bind", f"127.0.0.1:{PORT}",
                                    "--workers", str(args.web_workers)], stack.env, logs / "web.log")]
        alerts = celery_worker("equipment.fault", "alerts", concurrency=args.alert_workers)
        started_processes.append(start(alerts, push_env, logs / "alerts.log"))
        # the relay, as the Procfile runs it: the one publisher of committed events
        started_processes.append(start([sys.executable, "manage.py", "relay_outbox", "--interval", "0.5"],
                                       dict(stack.env, LOG_LEVEL="INFO"), logs / "relay.log"))
        for i in range(args.ai_workers):
            ai_env = dict(stack.env, ML_PRELOAD="1", TORCH_NUM_THREADS="1")
            nice = ["nice", "-n", str(args.ai_nice)] if args.ai_nice else []
            started_processes.append(start(nice + ai_worker(f"ai-{i}"), ai_env,
                                           logs / f"ai-{i}.log"))
        try:
            wait_until(lambda: (logs / "alerts.log").read_text().count("push backend fcm ready") >= args.alert_workers,
                       300, "the alert workers")
            wait_until(lambda: Reading.objects.count() >= 20, 300, "the AI workers to be busy")
            wait_until(lambda: post_reading("no-such-key") == 401, 300, "gunicorn")
            # every gunicorn worker loads the API before the clock runs
            warm_up = [threading.Thread(target=post_reading, args=("no-key",)) for _ in range(4 * args.web_workers)]
            for thread in warm_up:
                thread.start()
            for thread in warm_up:
                thread.join()
            readings_before, backlog_before = Reading.objects.count(), queue_depth("task.submitted")
            load_before = os.getloadavg()[0]
            print(f"{args.faults} faults at {args.rate}/s while {backlog_before} AI messages wait", file=sys.stderr)

            posted: dict[int, float] = {}
            statuses: list[int] = []
            started = time.monotonic()
            threads = []
            for i, (equipment_id, key) in enumerate(keys.items()):
                delay = started + i / args.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)

                def one(equipment_id=equipment_id, key=key):
                    posted[equipment_id] = time.time()
                    statuses.append(post_reading(key))

                thread = threading.Thread(target=one)
                thread.start()
                threads.append(thread)
            for thread in threads:
                thread.join()
            sends = fcm.wait_for_sends(args.faults, timeout=120)
            readings_during = Reading.objects.count() - readings_before
            load_after = os.getloadavg()[0]
            backlog_after = queue_depth("task.submitted")
        finally:
            processes.terminate_all(started_processes, 60)
            fcm.stop()

    arrived = {int(send.message["data"]["equipment_id"]): send.arrived_at for send in sends}
    latencies = sorted((arrived[e] - posted[e]) * 1000 for e in posted if e in arrived)
    figures = {
        "faults": args.faults,
        "pushes_received": len(sends),
        "post_errors": sum(status != 202 for status in statuses),
        "rate_per_s": args.rate,
        "p50_ms": round(percentile(latencies, 50), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "max_ms": round(latencies[-1], 1),
        "mean_ms": round(statistics.fmean(latencies), 1),
        "ai_backlog_before": backlog_before,
        "ai_backlog_after": backlog_after,
        "ai_readings_during": readings_during,
        "ai_workers": args.ai_workers,
        "ai_nice": args.ai_nice,
        "alert_workers": args.alert_workers,
        "load_average_before": round(load_before, 2),
        "load_average_after": round(load_after, 2),
        "cpus": os.cpu_count(),
    }
    print()
    print(f"{args.faults} faults at {args.rate}/s, telemetry POST -> push at the FCM server, while {backlog_before} "
          f"AI messages wait ({args.ai_workers} busy AI workers{f', nice {args.ai_nice}' if args.ai_nice else ''})")
    print(f"{'measure':<44} {'value':>10}")
    for label, value in (
        ("pushes received / faults", f"{len(sends)}/{args.faults}"),
        ("latency p50, ms", figures["p50_ms"]),
        ("latency p99, ms", figures["p99_ms"]),
        ("latency max, ms", figures["max_ms"]),
        ("latency mean, ms", figures["mean_ms"]),
        ("AI messages waiting, before / after", f"{backlog_before}/{backlog_after}"),
        ("AI readings stored meanwhile", readings_during),
        (f"load average before / after ({os.cpu_count()} CPUs)", f"{load_before:.1f}/{load_after:.1f}"),
    ):
        print(f"{label:<44} {value:>10}")
    print()
    print("seed: within 15 s (3 s on average); goal: p99 under 1 s")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {args.json}")
    ok = len(sends) == args.faults and figures["post_errors"] == 0 and backlog_after > 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
