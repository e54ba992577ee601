#!/usr/bin/env python
"""Task registration through the real web server: POST /api/v1/tasks/ with a 200 KB photo.

Starts gunicorn (the Procfile's `web` command) against a private database and vhost,
then drives it two ways, one after the other in the same run:

* closed loop: N concurrent clients (default 16) post back to back for D seconds; this
  finds the throughput, and by Little's law its latency is concurrency / throughput;
* open loop: requests arrive at a fixed rate (default half the closed-loop throughput)
  for D seconds; this is the latency a helper sees while the server is not saturated.

No AI worker runs: the events wait in the private vhost, which is deleted at the end.

    python benchmarks/api_submit.py [--clients 16] [--seconds 30] [--rate R] [--json FILE]
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
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.stack import ROOT, BenchStack, percentile  # noqa: E402
from tests import processes  # noqa: E402

PORT = int(os.environ.get("BENCH_PORT", "8765"))


def multipart(photo: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nbenchmark\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"laundry.jpg\"\r\n"
        f"Content-Type: image/jpeg\r\n\r\n"
    ).encode() + photo + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


class Load:
    def __init__(self, token: str, body: bytes, content_type: str):
        self.headers = {"Authorization": f"Token {token}", "Content-Type": content_type}
        self.body = body
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}
        self.lock = threading.Lock()

    def post(self, conn: http.client.HTTPConnection) -> http.client.HTTPConnection:
        started = time.perf_counter()
        try:
            conn.request("POST", "/api/v1/tasks/", body=self.body, headers=self.headers)
            response = conn.getresponse()
            response.read()
            outcome = None if response.status == 202 else f"HTTP {response.status}"
        except (OSError, http.client.HTTPException) as exc:
            outcome = exc.__class__.__name__
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
        elapsed = time.perf_counter() - started
        with self.lock:
            if outcome:
                self.errors[outcome] = self.errors.get(outcome, 0) + 1
            else:
                self.latencies.append(elapsed)
        return conn


def closed_loop(load: Load, clients: int, seconds: float) -> float:
    deadline = time.monotonic() + seconds

    def client():
        conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
        while time.monotonic() < deadline:
            conn = load.post(conn)
        conn.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - started


def open_loop(load: Load, rate: float, seconds: float, max_in_flight: int = 64) -> float:
    """Start a request every 1/rate seconds (each on its own connection, bounded)."""
    slots = threading.Semaphore(max_in_flight)
    threads = []
    started = time.monotonic()
    for i in range(int(rate * seconds)):
        delay = started + i / rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        slots.acquire()

        def one():
            conn = http.client.HTTPConnection("127.0.0.1", PORT, timeout=30)
            try:
                load.post(conn).close()
            finally:
                slots.release()

        thread = threading.Thread(target=one)
        thread.start()
        threads.append(thread)
    for t in threads:
        t.join()
    return time.monotonic() - started


def figures(load: Load, wall: float) -> dict:
    ms = [v * 1000 for v in load.latencies]
    return {
        "requests": len(ms),
        "requests_per_s": round(len(ms) / wall, 1),
        "mean_ms": round(statistics.fmean(ms), 1) if ms else None,
        "p50_ms": round(percentile(ms, 50), 1) if ms else None,
        "p99_ms": round(percentile(ms, 99), 1) if ms else None,
        "errors": sum(load.errors.values()),
        "error_kinds": load.errors,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16, help="closed-loop concurrent clients (default 16)")
    parser.add_argument("--seconds", type=float, default=30, help="duration of each phase (default 30)")
    parser.add_argument("--rate", type=float, help="open-loop requests/s (default: half the closed-loop rate)")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn sync workers (default 4, as the Procfile)")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    args = parser.parse_args()

    with BenchStack("api") as stack:
        from tests.factories import api_token, helper, noisy_jpeg

        token = api_token(helper())
        photo = noisy_jpeg(200_000)
        body, content_type = multipart(photo)
        server = processes.spawn(
            ["gunicorn", "fitness.wsgi", "--bind", f"127.0.0.1:{PORT}", "--workers", str(args.workers)],
            cwd=ROOT, env=stack.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            for _ in range(200):
                try:
                    http.client.HTTPConnection("127.0.0.1", PORT, timeout=1).request("GET", "/healthz")
                    break
                except OSError:
                    time.sleep(0.1)
            warm = Load(token, body, content_type)
            closed_loop(warm, 2, 2)
            print(f"closed loop: {args.clients} clients for {args.seconds:.0f} s", file=sys.stderr)
            closed = Load(token, body, content_type)
            closed_figures = figures(closed, closed_loop(closed, args.clients, args.seconds))
            rate = args.rate or max(1.0, round(closed_figures["requests_per_s"] / 2, 1))
            print(f"open loop: {rate} requests/s for {args.seconds:.0f} s", file=sys.stderr)
            opened = Load(token, body, content_type)
            open_figures = figures(opened, open_loop(opened, rate, args.seconds))
            open_figures["offered_rate_per_s"] = rate
        finally:
            processes.terminate(server, 30)

    print()
    print(f"POST /api/v1/tasks/ with a {len(photo) / 1000:.0f} KB JPEG, gunicorn with {args.workers} sync workers")
    print(f"{'phase':<34} {'requests':>8} {'req/s':>7} {'mean ms':>8} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}")
    for label, f in ((f"closed loop, {args.clients} clients", closed_figures),
                     (f"open loop, {rate}/s offered", open_figures)):
        print(f"{label:<34} {f['requests']:>8} {f['requests_per_s']:>7} {f['mean_ms']:>8} {f['p50_ms']:>7} "
              f"{f['p99_ms']:>7} {f['errors']:>6}")
    print()
    print("seed: an answer within 100 ms; goal p99 < 50 ms")
    if args.json:
        payload = {
            "photo_bytes": len(photo), "gunicorn_workers": args.workers, "clients": args.clients,
            "seconds": args.seconds, **{k: closed_figures[k] for k in ("requests_per_s", "p50_ms", "p99_ms", "errors")},
            "closed_loop": closed_figures, "open_loop": open_figures,
        }
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0 if closed_figures["errors"] == 0 and open_figures["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
