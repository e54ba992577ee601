#!/usr/bin/env python
"""The first request of every gunicorn worker after a (re)start, against the warm ones.

Starts the Procfile's `web` command as honcho does (`bash -c` of its line, with PORT and
WEB_CONCURRENCY set), so gunicorn.conf.py applies, against a private database and vhost.
Each round is a fresh start: once every worker has logged "Worker ready", as many
clients as there are workers send one request each at the same moment (a sync worker
takes one connection at a time, so each worker gets one), then more until every worker
has answered one; then `--warm` sequential requests. Which worker answered comes from
gunicorn's access log (its pid, `%(p)s`), matched by the request's X-Request-ID.

Two URLs, each measured in rounds of its own: the helpers' API (GET /api/v1/tasks/ with a
token) and an owner's admin page (the task list, signed in).

Each start is done twice, interleaved: as gunicorn.conf.py runs it (preload_app: the
master loads and warms the app before it forks) and with WEB_PRELOAD=0 (each worker loads
the app itself, as before the warm-up), so that both see the same load on the machine.

    python benchmarks/cold_start.py [--rounds 3] [--workers 4] [--warm 20] [--modes preload,no-preload]
                                    [--json FILE]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.stack import ROOT, BenchStack  # noqa: E402

TARGETS = {"api": "/api/v1/tasks/", "admin": "/admin/tasks/laundrytask/"}
ACCESS_FORMAT = "cold-start pid=%(p)s rid=%({x-request-id}i)s status=%(s)s"
ACCESS_LINE = re.compile(r"cold-start pid=<?(\d+)>? rid=(\S+) status=(\d+)")
MODES = {"preload": "1", "no-preload": "0"}  # WEB_PRELOAD
READY_LINE = re.compile(r"Worker ready \(pid: (\d+)\)")


def free_port() -> int:
    from tests.rabbitmq_node import free_port as port

    return port()


def procfile_web() -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line.startswith("web:"):
            return line.split(":", 1)[1].strip()
    raise SystemExit("Procfile has no web: line")


class Web:
    """The Procfile's web process in a process group of its own; stopped whatever happens."""

    def __init__(self, env: dict[str, str], workers: int, log: Path, access_log: Path):
        self.port = free_port()
        self.log = log
        self.access_log = access_log
        # as under `make run`: the virtualenv's gunicorn first on PATH
        path = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env = dict(env, PATH=path, PORT=str(self.port), WEB_CONCURRENCY=str(workers),
                   GUNICORN_CMD_ARGS=f"--access-logfile {access_log} --access-logformat '{ACCESS_FORMAT}'")
        self._out = open(log, "wb")
        self.process = subprocess.Popen(["bash", "-c", f"exec {procfile_web()}"], cwd=ROOT, env=env,
                                        stdout=self._out, stderr=subprocess.STDOUT, start_new_session=True)

    def ready_pids(self) -> list[int]:
        return [int(pid) for pid in READY_LINE.findall(self.log.read_text(errors="replace"))]

    def wait_ready(self, workers: int, timeout: float = 180.0) -> list[int]:
        deadline = time.monotonic() + timeout
        while len(pids := self.ready_pids()) < workers:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"gunicorn did not get {workers} workers ready:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.05)
        time.sleep(0.5)  # a worker logs "ready" just before its first accept()
        return pids

    def served_by(self) -> dict[str, int]:
        if not self.access_log.exists():
            return {}
        return {rid: int(pid) for pid, rid, _ in ACCESS_LINE.findall(self.access_log.read_text(errors="replace"))}

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._out.close()


def get(port: int, path: str, headers: dict[str, str]) -> tuple[str, float, int]:
    """One GET on a new connection: (its request id, seconds to the whole response, status)."""
    request_id = f"cold-{uuid.uuid4().hex}"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    started = time.perf_counter()
    conn.request("GET", path, headers={**headers, "X-Request-ID": request_id})
    response = conn.getresponse()
    response.read()
    elapsed = time.perf_counter() - started
    conn.close()
    return request_id, elapsed, response.status


def one_round(env, workers: int, path: str, headers: dict[str, str], warm: int, logs: Path, n: str) -> dict:
    web = Web(env, workers, logs / f"web-{n}.log", logs / f"access-{n}.log")
    try:
        pids = web.wait_ready(workers)
        results: list[tuple[str, float, int]] = []
        barrier = threading.Barrier(workers)

        def client():
            barrier.wait()
            results.append(get(web.port, path, headers))

        threads = [threading.Thread(target=client) for _ in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # a worker that got none of those (another answered two): more requests until each answered one
        deadline = time.monotonic() + 60
        while True:
            time.sleep(0.3)  # gunicorn writes the access line after the response
            served = web.served_by()
            first: dict[int, float] = {}
            for request_id, seconds, _ in results:
                pid = served.get(request_id)
                if pid is not None and pid not in first:
                    first[pid] = seconds
            if set(pids) <= set(first) or time.monotonic() > deadline:
                break
            results.append(get(web.port, path, headers))
        statuses = {status for _, _, status in results}
        warm_times = [get(web.port, path, headers)[1] for _ in range(warm)]
    finally:
        web.stop()
    return {"first_ms": {pid: round(s * 1000, 1) for pid, s in first.items()},
            "warm_ms": [round(s * 1000, 1) for s in warm_times], "statuses": sorted(statuses)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="fresh starts per URL (default 3)")
    parser.add_argument("--workers", type=int, default=4, help="WEB_CONCURRENCY (default 4, the Procfile's)")
    parser.add_argument("--warm", type=int, default=20, help="sequential requests after the first ones (default 20)")
    parser.add_argument("--modes", default="preload,no-preload",
                        help="preload (gunicorn.conf.py: the master loads and warms the app), no-preload "
                             "(WEB_PRELOAD=0: each worker loads it itself, as before); default both, interleaved")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    args = parser.parse_args()
    args.modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    if not args.modes or set(args.modes) - set(MODES):
        parser.error(f"--modes: a comma-separated list of {', '.join(MODES)}")

    scratch = Path(tempfile.mkdtemp(prefix="fitness-cold-start-"))
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(scratch / "metrics")
    (scratch / "metrics").mkdir()
    figures: dict[str, dict] = {}
    try:
        measure(args, scratch, figures)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report(args, figures)
    ok = all(f["statuses"] == [200] and f["workers_measured"] == args.workers * args.rounds for f in figures.values())
    return 0 if ok else 1


def measure(args, scratch: Path, figures: dict[str, dict]) -> None:
    with BenchStack("coldstart") as stack:
        from django.test import Client

        from tests import factories

        # the manifest of hashed static files that the admin's pages need (make setup writes it)
        static_root = scratch / "static"
        stack.env["STATIC_ROOT"] = os.environ["STATIC_ROOT"] = str(static_root)
        subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"], cwd=ROOT,
                       env=stack.env, check=True)
        token = factories.api_token(factories.helper())
        client = Client()
        client.force_login(factories.user("operator", superuser=True))
        headers = {
            "api": {"Authorization": f"Token {token}"},
            "admin": {"Cookie": f"sessionid={client.cookies['sessionid'].value}"},
        }
        # the modes' rounds interleaved, so that both see the same load on the machine
        for name, path in TARGETS.items():
            rounds: dict[str, list] = {mode: [] for mode in args.modes}
            for n in range(args.rounds):
                for mode in args.modes:
                    print(f"{name}, {mode}: round {n + 1}/{args.rounds}", file=sys.stderr)
                    env = dict(stack.env, WEB_PRELOAD=MODES[mode])
                    rounds[mode].append(one_round(env, args.workers, path, headers[name], args.warm, scratch,
                                                  f"{name}-{mode}-{n}"))
            for mode in args.modes:
                first = [ms for r in rounds[mode] for ms in r["first_ms"].values()]
                warm = [ms for r in rounds[mode] for ms in r["warm_ms"]]
                figures[f"{name} {mode}"] = {
                    "path": path, "mode": mode, "rounds": rounds[mode], "workers_measured": len(first),
                    "statuses": sorted({s for r in rounds[mode] for s in r["statuses"]}),
                    "first_median_ms": round(statistics.median(first), 1), "first_max_ms": max(first),
                    "warm_median_ms": round(statistics.median(warm), 1) if warm else None,
                    "warm_max_ms": max(warm) if warm else None,
                }


def report(args, figures: dict[str, dict]) -> None:
    print()
    print(f"first request of each gunicorn worker after a start ({args.workers} workers, {args.rounds} starts per URL)")
    print(f"{'URL':<28} {'gunicorn':<11} {'start':>5}  first request of each worker, ms")
    for f in figures.values():
        for n, r in enumerate(f["rounds"], 1):
            per_worker = "  ".join(f"{ms:7.1f}" for ms in r["first_ms"].values())
            print(f"{f['path']:<28} {f['mode']:<11} {n:>5} {per_worker}")
    print()
    print(f"{'URL':<28} {'gunicorn':<11} {'workers':>7} {'first p50':>9} {'first max':>9} {'warm p50':>9} "
          f"{'warm max':>9} {'status':>7}")
    for f in figures.values():
        print(f"{f['path']:<28} {f['mode']:<11} {f['workers_measured']:>7} {f['first_median_ms']:>9} "
              f"{f['first_max_ms']:>9} {f['warm_median_ms']:>9} {f['warm_max_ms']:>9} "
              f"{','.join(map(str, f['statuses'])):>7}")
    print("(first: each worker's first request, all workers at once; warm: later requests one at a time)")
    if args.json:
        payload = {"workers": args.workers, "rounds": args.rounds, **figures}
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    sys.exit(main())
