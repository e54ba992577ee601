#!/usr/bin/env python
"""Task registration through the real web server, beside a bare-Django floor.

POST /api/v1/tasks/ with a 200 KB photo against what Django itself costs for the same upload.
Two gunicorns with the same number of sync workers run side by side on a private database
and vhost:

* the project: `fitness.wsgi`, as the Procfile's `web` runs it; every request carries a
  token and a fresh Idempotency-Key, as the mobile app sends them;
* the floor: benchmarks/upload_floor.py, a Django view of its own that takes the same
  multipart photo, writes it to disk and answers 202 (no database, no checks);
* the write floor: the same view making the upload's round trips to PostgreSQL itself with
  psycopg2 (a token lookup, one statement with the task's and its event's INSERTs, the NOTIFY after it),
  which shows how much of the ratio the database takes on these cores, before any framework.

The same closed-loop client (N clients posting back to back) drives them in interleaved
phases (floor, write floor, project, floor, ...), so all see the same machine; the ratio of
the project's throughput to the floor's is what the project's upload adds. Then an open
loop offers the project a fixed rate (default half its closed-loop throughput): the latency
a helper sees while the server is not saturated. It also prints the CPU each closed loop cost per request: the
server's processes (the gunicorn master and workers) and PostgreSQL's (all of them: backends,
WAL writer), read from /proc, which says where a machine-bound ratio goes. No AI worker runs:
the events wait in the private vhost, which is deleted at the end.

    python benchmarks/api_submit.py [--clients 16] [--seconds 10] [--rounds 3] [--workers 4] [--json FILE]
    python benchmarks/api_submit.py --smoke      # a few seconds, to check that it works
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.stack import (  # noqa: E402
    ROOT,
    BenchStack,
    cpu_seconds,
    cpu_used,
    percentile,
    postgres_pids,
    process_tree,
)
from tests import processes  # noqa: E402

GOAL_RATIO = 0.5  # issue 15: upload throughput at least half the floor's
GOAL_P99_MS = 60.0  # ... with a p99 under 60 ms at 16 clients


def multipart(photo: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"note\"\r\n\r\nbenchmark\r\n"
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"laundry.jpg\"\r\n"
        f"Content-Type: image/jpeg\r\n\r\n"
    ).encode() + photo + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


class Server:
    """A gunicorn on 127.0.0.1:port and the URL path it takes uploads at."""

    def __init__(self, label: str, port: int, path: str, argv: list[str], env: dict):
        self.label, self.port, self.path = label, port, path
        self.process = processes.spawn(
            [*argv, "--bind", f"127.0.0.1:{port}"], cwd=ROOT, env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"{self.label}: gunicorn exited with {self.process.returncode} before answering")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1)
                conn.request("GET", "/healthz")
                conn.getresponse().read()
                conn.close()
                return
            except (OSError, http.client.HTTPException):
                time.sleep(0.1)
        raise SystemExit(f"{self.label}: no answer on port {self.port} within {timeout:.0f} s")


class Load:
    """The latencies and errors of one phase against one server."""

    def __init__(self, server: Server, headers: dict[str, str], body: bytes):
        self.server, self.headers, self.body = server, headers, body
        self.latencies: list[float] = []
        self.errors: dict[str, int] = {}
        self.lock = threading.Lock()

    def connect(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)

    def post(self, conn: http.client.HTTPConnection) -> http.client.HTTPConnection:
        # a fresh key per request, as the mobile app sends one per photo (the floor ignores it)
        headers = {**self.headers, "Idempotency-Key": uuid.uuid4().hex}
        started = time.perf_counter()
        try:
            conn.request("POST", self.server.path, body=self.body, headers=headers)
            response = conn.getresponse()
            response.read()
            outcome = None if response.status == 202 else f"HTTP {response.status}"
        except (OSError, http.client.HTTPException) as exc:
            outcome = exc.__class__.__name__
            conn.close()
            conn = self.connect()
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
        conn = load.connect()
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
            try:
                load.post(load.connect()).close()
            finally:
                slots.release()

        thread = threading.Thread(target=one)
        thread.start()
        threads.append(thread)
    for t in threads:
        t.join()
    return time.monotonic() - started


def figures(loads: list[Load], wall: float) -> dict:
    ms = [v * 1000 for load in loads for v in load.latencies]
    errors: dict[str, int] = {}
    for load in loads:
        for kind, n in load.errors.items():
            errors[kind] = errors.get(kind, 0) + n
    return {
        "requests": len(ms),
        "requests_per_s": round(len(ms) / wall, 1),
        "mean_ms": round(statistics.fmean(ms), 1) if ms else None,
        "p50_ms": round(percentile(ms, 50), 1) if ms else None,
        "p99_ms": round(percentile(ms, 99), 1) if ms else None,
        "errors": sum(errors.values()),
        "error_kinds": errors,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16, help="closed-loop concurrent clients (default 16)")
    parser.add_argument("--seconds", type=float, default=10,
                        help="duration of each closed-loop phase and of the open loop (default 10)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved closed-loop rounds, each: floor, write floor, project (default 3)")
    parser.add_argument("--rate", type=float, help="open-loop requests/s (default: half the closed-loop rate)")
    parser.add_argument("--workers", type=int, default=4,
                        help="gunicorn sync workers of each server (default 4, as the Procfile)")
    parser.add_argument("--smoke", action="store_true",
                        help="a few seconds (2 workers, 1 round of 2 s): checks that it works, says nothing of speed")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    parser.add_argument("--profile", metavar="FILE",
                        help="record the project's workers with py-spy (wall clock, --idle) during its phases"
                             " into FILE (collapsed stacks; py-spy from $PY_SPY or PATH)")
    args = parser.parse_args()
    py_spy = None
    if args.profile:
        py_spy = os.environ.get("PY_SPY") or shutil.which("py-spy")
        if not py_spy:
            parser.error("--profile needs py-spy: pip install --target DIR py-spy and set PY_SPY=DIR/bin/py-spy")
    if args.smoke:
        args.seconds, args.rounds, args.workers = 2.0, 1, 2

    from tests.rabbitmq_node import free_port

    port = int(os.environ.get("BENCH_PORT") or free_port())
    floor_port = int(os.environ.get("BENCH_FLOOR_PORT") or free_port())
    write_floor_port = free_port()
    with BenchStack("api") as stack:
        from tests.factories import api_token, helper, noisy_jpeg

        token = api_token(helper())
        photo = noisy_jpeg(200_000)
        body, content_type = multipart(photo)
        headers = {"Authorization": f"Token {token}", "Content-Type": content_type}
        floor_dir = stack.media / "floor"
        floor_dir.mkdir()
        gunicorn = [sys.executable, "-m", "gunicorn", "--workers", str(args.workers)]
        servers = []
        try:
            project = Server("project", port, "/api/v1/tasks/", [*gunicorn, "fitness.wsgi"], stack.env)
            servers.append(project)
            floor_app = [*gunicorn, "benchmarks.upload_floor:application", "--config", "python:benchmarks.upload_floor"]
            floor_env = {**stack.env, "FLOOR_UPLOAD_DIR": str(floor_dir)}
            floor = Server("floor", floor_port, "/upload/", floor_app, floor_env)
            servers.append(floor)
            write_floor = Server("write floor", write_floor_port, "/upload/", floor_app,
                                 {**floor_env, "FLOOR_DATABASE_URL": stack.env["DATABASE_URL"]})
            servers.append(write_floor)
            for server in servers:
                server.wait_ready()
                closed_loop(Load(server, headers, body), 2, 1 if args.smoke else 2)  # warm up
            phases = (("floor", floor), ("write_floor", write_floor), ("project", project))
            loads: dict[str, list[Load]] = {name: [] for name, _ in phases}
            walls = {name: 0.0 for name, _ in phases}
            cpu = {name: [0.0, 0.0] for name, _ in phases}  # CPU seconds: the server's processes, PostgreSQL's
            rounds = []
            for n in range(args.rounds):
                this_round = {}
                for name, server in phases:
                    load = Load(server, headers, body)
                    spy = None
                    if py_spy and name == "project":
                        spy = processes.spawn(
                            [py_spy, "record", "--pid", str(server.process.pid), "--subprocesses", "--idle",
                             "--nonblocking", "--format", "raw", "--duration", str(int(args.seconds)),
                             "--output", f"{args.profile}.{n + 1}"],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    server_pids = process_tree(server.process.pid)
                    cpu_before = cpu_seconds(server_pids), cpu_seconds(postgres_pids())
                    wall = closed_loop(load, args.clients, args.seconds)
                    cpu_after = cpu_seconds(server_pids), cpu_seconds(postgres_pids())
                    if spy is not None:
                        spy.wait(60)
                    loads[name].append(load)
                    walls[name] += wall
                    cpu[name][0] += cpu_used(cpu_before[0], cpu_after[0])
                    cpu[name][1] += cpu_used(cpu_before[1], cpu_after[1])
                    this_round[name] = figures([load], wall)
                rounds.append(this_round)
                print(f"round {n + 1}/{args.rounds}, {args.clients} clients: floor "
                      f"{this_round['floor']['requests_per_s']} req/s, write floor "
                      f"{this_round['write_floor']['requests_per_s']} req/s, project "
                      f"{this_round['project']['requests_per_s']} req/s", file=sys.stderr)
            by_phase = {name: figures(loads[name], walls[name]) for name, _ in phases}
            floor_figures, write_floor_figures, closed_figures = (by_phase[name] for name, _ in phases)
            for name, phase_figures in by_phase.items():
                served = max(1, phase_figures["requests"])
                phase_figures["server_cpu_ms_per_request"] = round(cpu[name][0] * 1000 / served, 2)
                phase_figures["postgres_cpu_ms_per_request"] = round(cpu[name][1] * 1000 / served, 2)
            rate = args.rate or max(1.0, round(closed_figures["requests_per_s"] / 2, 1))
            print(f"open loop: {rate} requests/s for {args.seconds:.0f} s", file=sys.stderr)
            opened = Load(project, headers, body)
            open_figures = figures([opened], open_loop(opened, rate, args.seconds))
            open_figures["offered_rate_per_s"] = rate
        finally:
            processes.terminate_all([s.process for s in servers], 30)

    floor_rate = floor_figures["requests_per_s"]
    ratio = round(closed_figures["requests_per_s"] / floor_rate, 3) if floor_rate else None
    write_floor_ratio = round(write_floor_figures["requests_per_s"] / floor_rate, 3) if floor_rate else None
    print()
    print(f"a {len(photo) / 1000:.0f} KB JPEG, each server gunicorn with {args.workers} sync workers; "
          f"{args.rounds} interleaved rounds of {args.seconds:.0f} s")
    print(f"{'server and phase':<44} {'requests':>8} {'req/s':>7} {'mean ms':>8} {'p50 ms':>7} {'p99 ms':>7} "
          f"{'errors':>6}")
    for label, f in ((f"bare Django floor, {args.clients} clients", floor_figures),
                     (f"write floor (+ psycopg2), {args.clients} clients", write_floor_figures),
                     (f"POST /api/v1/tasks/, {args.clients} clients", closed_figures),
                     (f"POST /api/v1/tasks/, open loop {rate}/s", open_figures)):
        print(f"{label:<44} {f['requests']:>8} {f['requests_per_s']:>7} {f['mean_ms']!s:>8} {f['p50_ms']!s:>7} "
              f"{f['p99_ms']!s:>7} {f['errors']:>6}")
    print()
    print(f"throughput: {ratio} of the floor (goal >= {GOAL_RATIO}); p99 at {args.clients} clients: "
          f"{closed_figures['p99_ms']} ms (goal < {GOAL_P99_MS:.0f} ms)")
    print(f"the write floor (the same statements from psycopg2, no framework): {write_floor_ratio} of the floor")
    print(f"CPU per request in the closed loops (the clients, both servers and PostgreSQL share the machine): "
          f"the floor's gunicorn {floor_figures['server_cpu_ms_per_request']} ms; the write floor's "
          f"{write_floor_figures['server_cpu_ms_per_request']} ms + PostgreSQL "
          f"{write_floor_figures['postgres_cpu_ms_per_request']} ms; the project's gunicorn "
          f"{closed_figures['server_cpu_ms_per_request']} ms + PostgreSQL "
          f"{closed_figures['postgres_cpu_ms_per_request']} ms")
    if args.json:
        payload = {
            "photo_bytes": len(photo), "gunicorn_workers": args.workers, "clients": args.clients,
            "seconds": args.seconds, "rounds": args.rounds, "smoke": args.smoke,
            **{k: closed_figures[k] for k in ("requests_per_s", "p50_ms", "p99_ms", "errors")},
            "ratio_to_floor": ratio, "write_floor_ratio_to_floor": write_floor_ratio,
            "closed_loop": closed_figures, "floor": floor_figures, "write_floor": write_floor_figures,
            "open_loop": open_figures,
            "per_round": rounds,
        }
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.json}")
    if args.profile:
        rounds_recorded = [Path(f"{args.profile}.{n + 1}") for n in range(args.rounds)]
        Path(args.profile).write_text("".join(p.read_text() for p in rounds_recorded if p.exists()))
        for p in rounds_recorded:
            p.unlink(missing_ok=True)
        print(f"wrote {args.profile} (py-spy, collapsed stacks of the project's workers)")
    failed = sum(f["errors"] for f in by_phase.values()) + open_figures["errors"]
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
