#!/usr/bin/env python
"""The verification plan of DD-02 (section 4.4.2.4, in docs/decisions.md) as one report, measured on this machine.

    publish latency, 1000 events, avg <= 10 ms    benchmarks/publish.py (publish_event, one transaction each)
    AI consumer throughput, 3 instances, >= 60/s  benchmarks/ai_throughput.py (3 AI workers, committed tasks)
                                                  (and our goals: >= 150/s end to end, >= 0.5 of a bare
                                                  pipeline, p50 < 100 ms at 10 tasks/s offered)
    consumer killed and restarted: 0 lost         benchmarks/faults.py (kill -9 of an AI worker mid-batch)
    fault alert within 15 s (3 s on average)      benchmarks/alert_latency.py (telemetry POST -> push, AI busy)
    MLOps deploys without redeploying the web     the producer side imports nothing of ml/ (AST check)
    [issue 15] upload >= 0.5 of bare Django,      benchmarks/api_submit.py (POST /api/v1/tasks/ beside a bare
      p99 < 60 ms at 16 clients                   Django view taking the same photo, interleaved phases)

and the rows the plan leaves out: messages lost during a broker restart and during a broker
outage (benchmarks/faults.py, on a private RabbitMQ node), duplicate effects over every
fault run, and the audit subscriber's throughput at the full upload rate (benchmarks/audit.py).
Each benchmark runs as its own process on a private database and vhost (or node)
and hands its figures back as JSON; this script only runs them and judges the figures.

    python benchmarks/verify.py [--ai-tasks 3000] [--fault-tasks 300] [--json FILE]
    python benchmarks/verify.py --smoke      # every scenario with small sizes (`make test` runs it)

A full run takes about 8-10 minutes on the 2-core development machine. The smoke run goes
through the same scenarios end to end with small sizes; its loss and duplicate rows are
judged as in a full run (a loss fails it), its timing rows are printed but not judged
("not judged (smoke)"): small runs on a busy machine say nothing about the targets.

Every benchmark runs in a process group of its own and stops what it started however it
ends (tests/processes.py); a Ctrl-C or SIGTERM here is passed on to the running one as a
SIGTERM, and this script waits for its cleanup.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests import processes  # noqa: E402


@dataclass
class Row:
    check: str
    target: str
    measured: str
    result: str  # PASS, FAIL, n/a (not measured, with the reason in `measured`), or NOT_JUDGED
    value: float | None = None


NOT_JUDGED = "not judged (smoke)"
SMOKE = False  # set by --smoke: timing targets are printed, never judged


def timing(passed: bool) -> str:
    """The result of a timing row: judged in a full run, not in a smoke run."""
    if SMOKE:
        return NOT_JUDGED
    return "PASS" if passed else "FAIL"


class Benchmark:
    """benchmarks/<script> with --json, as a process of its own.

    Its progress and table go to our stderr, or, when `log_dir` is given (the smoke run
    starts every benchmark at once), to <log_dir>/<script>.log, whose tail is printed if
    it fails.
    """

    def __init__(self, script: str, *args: str, env: dict | None = None, log_dir: Path | None = None):
        self.script, self.args, self.env, self.log_dir = script, args, env or {}, log_dir
        self.process = None
        self._tmp = tempfile.TemporaryDirectory()
        self.out = Path(self._tmp.name) / "figures.json"

    def start(self) -> Benchmark:
        self.started = time.monotonic()
        print(f"\n=== {self.script} {' '.join(self.args)}", file=sys.stderr, flush=True)
        output = sys.stderr
        if self.log_dir is not None:
            self.log = self.log_dir / f"{Path(self.script).stem}.log"
            output = open(self.log, "ab")
        # its own process group: a Ctrl-C here reaches only this script, which passes it on as a
        # SIGTERM and waits while the benchmark stops its workers and removes its database
        self.process = processes.spawn(
            [sys.executable, str(ROOT / "benchmarks" / self.script), *self.args, "--json", str(self.out)],
            cwd=ROOT, stdout=output, stderr=output, env={**os.environ, **self.env},
        )
        if output is not sys.stderr:
            output.close()
        return self

    def result(self) -> tuple[dict | None, str]:
        """Wait for it (starting it if need be): its figures, or None and why not."""
        if self.process is None:
            self.start()
        try:
            returncode = self.process.wait()
        finally:
            processes.terminate(self.process, 180)
        took = time.monotonic() - self.started
        print(f"=== {self.script} finished in {took:.0f} s (exit {returncode})", file=sys.stderr, flush=True)
        try:
            if returncode != 0 and self.log_dir is not None:
                tail = self.log.read_text(errors="replace").splitlines()[-40:]
                print("\n".join([f"--- the end of {self.log}", *tail]), file=sys.stderr, flush=True)
            if not self.out.exists():
                return None, f"{self.script} failed (exit {returncode}) before writing figures"
            return json.loads(self.out.read_text()), ""
        finally:
            self._tmp.cleanup()


def publish_row(n: int, bench: Benchmark) -> tuple[Row, dict | None]:
    figures, error = bench.result()
    check = f"publish latency, {n} events"
    if figures is None:
        return Row(check, "avg <= 10 ms", error, "FAIL"), None
    mean = figures["mean_ms"]
    measured = (f"avg {mean:.2f} ms (p50 {figures['p50_ms']:.2f}, p99 {figures['p99_ms']:.2f}; blocked broker "
                f"p50 {figures['blocked_caller_p50_ms']:.2f}); commit -> queue p50 "
                f"{figures['commit_to_queue_p50_ms']:.1f} ms, p99 {figures['commit_to_queue_p99_ms']:.1f}; "
                f"relay {figures['relay_events_per_s']:.0f} events/s")
    if figures["unpublished_after_run"] or figures["lost"]:  # committed and never published or never arrived: a loss
        measured += f"; {figures['unpublished_after_run']} left in the outbox, {figures['lost']} never arrived"
        return Row(check, "avg <= 10 ms", measured, "FAIL", mean), figures
    return Row(check, "avg <= 10 ms", measured, timing(mean <= 10), mean), figures


def throughput_row(workers: int, bench: Benchmark) -> tuple[Row, dict | None]:
    figures, error = bench.result()
    check = f"AI consumer throughput, {workers} instances"
    if figures is None:
        return Row(check, ">= 60 tasks/s", error, "FAIL"), None
    consume = figures["consume_only_tasks_per_s"]
    measured = (f"{consume:.1f} tasks/s consuming ({figures['end_to_end_tasks_per_s']:.1f} end to end, "
                f"{figures['tasks_read']}/{figures['tasks']} read; bare pipeline "
                f"{figures['bare_pipeline_photos_per_s']:.0f} photos/s)")
    if figures["tasks_read"] < figures["tasks"]:  # tasks never read: a loss, judged in a smoke run too
        return Row(check, ">= 60 tasks/s", measured, "FAIL", consume), figures
    return Row(check, ">= 60 tasks/s", measured, timing(consume >= 60), consume), figures


def ai_goal_rows(workers: int, figures: dict | None, error: str = "") -> list[Row]:
    """The AI pool's own goals (issue 16: dynamic batching), from ai_throughput.py's figures."""
    from benchmarks.ai_throughput import GOAL_LIGHT_P50_MS, GOAL_TASKS_PER_S, GOAL_VS_BARE

    checks = [(f"[goal] AI end to end, {workers} instances", f">= {GOAL_TASKS_PER_S} tasks/s"),
              ("[goal] AI end to end / bare pipeline", f">= {GOAL_VS_BARE}"),
              ("[goal] AI latency p50 at 10 tasks/s offered", f"< {GOAL_LIGHT_P50_MS} ms")]
    if figures is None:
        return [Row(check, target, error, "FAIL") for check, target in checks]
    rate, ratio = figures["end_to_end_tasks_per_s"], figures["end_to_end_vs_bare"] or 0.0
    light, heavy = figures["light_latency"], figures["saturation_latency"]
    batches = figures["saturation_batches"]
    rows = [
        Row(*checks[0], f"{rate:.1f} tasks/s ({figures['tasks_read']}/{figures['tasks']} read; batches of "
                        f"{batches['mean']} on average, ML_BATCH_MAX {figures['ml_batch_max']})",
            timing(rate >= GOAL_TASKS_PER_S), rate),
        Row(*checks[1], f"{ratio:.2f} (bare pipeline {figures['bare_pipeline_photos_per_s']:.0f} photos/s)",
            timing(ratio >= GOAL_VS_BARE), ratio),
    ]
    p50 = light["p50_ms"]
    measured = (f"p50 {p50} ms, p99 {light['p99_ms']} ms ({figures['light_tasks_read']}/{figures['light_tasks']} "
                f"read); saturation p50 {heavy['p50_ms']} ms, p99 {heavy['p99_ms']} ms")
    if p50 is None or figures["light_tasks_read"] < figures["light_tasks"]:  # a loss: judged in a smoke run too
        rows.append(Row(*checks[2], measured, "FAIL", p50))
    else:
        rows.append(Row(*checks[2], measured, timing(p50 < GOAL_LIGHT_P50_MS), p50))
    return rows


def upload_row(bench: Benchmark) -> tuple[Row, dict | None]:
    check = "[added] upload vs bare Django, 16 clients"
    target = ">= 0.5 of the floor, p99 < 60 ms"
    figures, error = bench.result()
    if figures is None:
        return Row(check, target, error, "FAIL"), None
    ratio, p99 = figures["ratio_to_floor"] or 0.0, figures["p99_ms"] or float("inf")
    measured = (f"{figures['requests_per_s']:.0f} req/s, {ratio:.2f} of the floor's "
                f"{figures['floor']['requests_per_s']:.0f}; p99 {p99:.0f} ms")
    if figures.get("write_floor_ratio_to_floor") is not None:  # the same statements without a framework
        measured += f"; write floor {figures['write_floor_ratio_to_floor']:.2f}"
    errors = (figures["errors"] + figures["floor"]["errors"] + figures.get("write_floor", {}).get("errors", 0)
              + figures["open_loop"]["errors"])
    if errors:  # refused or failed uploads: judged in a smoke run too
        return Row(check, target, f"{measured}; {errors} failed requests", "FAIL", ratio), figures
    return Row(check, target, measured, timing(ratio >= 0.5 and p99 < 60), ratio), figures


def fault_rows(bench: Benchmark) -> tuple[list[Row], dict | None]:
    figures, error = bench.result()
    names = {
        "consumer_killed": "consumer killed (kill -9) and restarted",
        "broker_restart": "[added] broker restart, messages waiting",
        "broker_outage": "[added] broker outage, tasks submitted",
    }
    if figures is None:
        return [Row(name, "0 lost", error, "FAIL") for name in names.values()] + [
            Row("[added] duplicate effects (fault runs)", "0", error, "FAIL")], None
    rows = []
    for key, name in names.items():
        r = figures[key]
        rows.append(Row(name, "0 lost", f"{r['lost']} lost of {r['tasks']}", "PASS" if r["lost"] == 0 else "FAIL",
                        r["lost"]))
    duplicates = sum(r["duplicate_effects"] for r in figures.values())
    skipped = sum(r["redeliveries_skipped"] for r in figures.values())
    total = sum(r["tasks"] for r in figures.values())
    rows.append(Row("[added] duplicate effects (fault runs)", "0",
                    f"{duplicates} of {total} events ({skipped} redeliveries skipped by idempotency)",
                    "PASS" if duplicates == 0 else "FAIL", duplicates))
    return rows, figures


def alert_row(bench: Benchmark) -> tuple[Row, dict | None]:
    check = "fault alert time (telemetry -> push)"
    target = "<= 15 s, avg 3 s"
    figures, error = bench.result()
    if figures is None:
        return Row(check, target, error, "FAIL"), None
    try:
        mean, worst = figures["mean_ms"] / 1000, figures["max_ms"] / 1000
        received, faults = figures["pushes_received"], figures["faults"]
    except (KeyError, TypeError):
        return Row(check, target, f"alert_latency.py figures not understood: {sorted(figures)}", "n/a"), figures
    measured = (f"avg {mean:.2f} s, max {worst:.2f} s, p99 {figures.get('p99_ms', 0) / 1000:.2f} s; "
                f"{received}/{faults} pushes, AI pool busy")
    if received != faults:  # an alert never pushed: a loss, judged in a smoke run too
        return Row(check, target, measured, "FAIL", mean), figures
    return Row(check, target, measured, timing(worst <= 15 and mean <= 3), mean), figures


def independence_row() -> tuple[Row, dict]:
    from tests.test_architecture import CONSUMER_PACKAGES, PRODUCER_PACKAGES, imported_modules

    files = offenders = 0
    found = []
    for package in PRODUCER_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            files += 1
            bad = [name for name in imported_modules(path) if name.split(".")[0] == "ml"]
            offenders += len(bad)
            found += [f"{path.relative_to(ROOT)} imports {name}" for name in bad]
    row = Row(
        "independent deployment (producer side imports no ml/)",
        "0 imports", f"{offenders} imports of ml/ in {files} files", "PASS" if offenders == 0 else "FAIL", offenders,
    )
    return row, {"files": files, "imports_of_ml": found, "consumer_packages": sorted(CONSUMER_PACKAGES)}


def audit_row(bench: Benchmark) -> tuple[Row, dict | None]:
    figures, error = bench.result()
    check = "[added] audit subscriber at the full upload rate"
    target = ">= 120 events/s (60 uploads/s x 2 events)"
    if figures is None:
        return Row(check, target, error, "FAIL"), None
    rate = figures["events_per_s"]
    measured = (f"{rate:.1f} events/s, {figures['events_recorded']}/{figures['events']} recorded "
                f"(lag p99 {figures['lag_p99_s']} s)")
    if figures["events_recorded"] < figures["events"]:  # an event missing from the audit log: a loss
        return Row(check, target, measured, "FAIL", rate), figures
    return Row(check, target, measured, timing(rate >= figures["needed_events_per_s"]), rate), figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1000, help="events to publish (default 1000, the seed's)")
    parser.add_argument("--ai-tasks", type=int, default=3000, help="tasks for the throughput run (default 3000)")
    parser.add_argument("--fault-tasks", type=int, default=300, help="tasks per fault scenario (default 300)")
    parser.add_argument("--workers", type=int, default=3, help="AI worker instances (default 3, the seed's)")
    parser.add_argument("--smoke", action="store_true",
                        help="every scenario with small sizes (a minute or two), on a private RabbitMQ node; "
                             "timing rows are printed, not judged")
    parser.add_argument("--private-broker", action="store_true",
                        help="run every benchmark on a private RabbitMQ node (tests/rabbitmq_node.py) instead of "
                             "the one on 5672, which other runs may keep busy (implied by --smoke)")
    parser.add_argument("--json", metavar="FILE", help="also write the rows and every benchmark's figures to FILE")
    args = parser.parse_args()
    global SMOKE
    SMOKE = args.smoke
    processes.handle_termination()  # SIGTERM: the running benchmark is stopped and cleans up first
    sizes = dict(events=args.events, ai_tasks=args.ai_tasks, fault_tasks=args.fault_tasks,
                 workers=args.workers, bare_seconds=5.0, alerts=[], uploads=[], audit_events=2000)
    if args.smoke:
        sizes.update(events=100, ai_tasks=60, fault_tasks=24, workers=2, bare_seconds=1.0, audit_events=100,
                     alerts=["--faults", "10", "--backlog", "400", "--ai-workers", "1", "--alert-workers", "1",
                             "--web-workers", "1"], uploads=["--smoke"])

    started = time.monotonic()
    raw: dict[str, dict | None] = {}
    rows: list[Row] = []
    node = None
    benchmarks: dict[str, Benchmark] = {}
    try:
        if args.smoke or args.private_broker:
            from tests.rabbitmq_node import RabbitMQNode, available

            reason = available()
            if reason:
                print(f"no private RabbitMQ node ({reason}): the benchmarks use the one on 5672", file=sys.stderr)
            else:
                node = RabbitMQNode().start()
                # BenchStack (benchmarks/stack.py) attaches to it; faults.py starts a node of its own
                os.environ["BENCH_RABBITMQ_NODE"] = node.describe()
                print(f"private RabbitMQ node {node.name} on port {node.port}", file=sys.stderr)
        from tests.rabbitmq_node import free_port

        log_dir = None
        if args.smoke:  # every benchmark at once: their timings are not judged, their losses are
            log_dir = ROOT / "var" / "bench-logs" / f"verify-smoke-{time.strftime('%Y%m%d-%H%M%S')}"
            log_dir.mkdir(parents=True)
            print(f"smoke run: the benchmarks run at once, their output is in {log_dir}", file=sys.stderr)
        benchmarks = {
            "publish": Benchmark("publish.py", *(["--smoke"] if args.smoke else ["-n", str(sizes["events"])]),
                                 log_dir=log_dir),
            "ai_throughput": Benchmark("ai_throughput.py", "-n", str(sizes["ai_tasks"]), "--workers",
                                       str(sizes["workers"]), "--bare-seconds", str(sizes["bare_seconds"]),
                                       log_dir=log_dir),
            "faults": Benchmark("faults.py", "-n", str(sizes["fault_tasks"]), "--workers", str(sizes["workers"]),
                                log_dir=log_dir),
            # its web server's port: BENCH_PORT, free now (another run may be using the default)
            "alert_latency": Benchmark("alert_latency.py", *sizes["alerts"], env={"BENCH_PORT": str(free_port())},
                                       log_dir=log_dir),
            "api_submit": Benchmark("api_submit.py", *sizes["uploads"], log_dir=log_dir),
            "audit": Benchmark("audit.py", "-n", str(sizes["audit_events"]), log_dir=log_dir),
        }
        if args.smoke:
            for bench in benchmarks.values():
                bench.start()
        row, raw["publish"] = publish_row(sizes["events"], benchmarks["publish"])
        rows.append(row)
        row, raw["ai_throughput"] = throughput_row(sizes["workers"], benchmarks["ai_throughput"])
        rows.append(row)
        goals = ai_goal_rows(sizes["workers"], raw["ai_throughput"], row.measured)
        faults, raw["faults"] = fault_rows(benchmarks["faults"])
        rows.append(faults[0])
        row, raw["alert_latency"] = alert_row(benchmarks["alert_latency"])
        rows.append(row)
        row, raw["independence"] = independence_row()
        rows.append(row)
        row, raw["api_submit"] = upload_row(benchmarks["api_submit"])
        rows.append(row)
        row, raw["audit"] = audit_row(benchmarks["audit"])
        rows.append(row)
        rows += faults[1:]
        rows += goals
    finally:
        # an exception or a signal here: every benchmark still running gets SIGTERM and the time
        # to stop its workers and remove its database before the broker node goes
        processes.terminate_all([b.process for b in benchmarks.values() if b.process is not None], 180)
        if node is not None:
            node.cleanup()
    took = time.monotonic() - started

    widths = [max(len(getattr(r, f)) for r in rows) for f in ("check", "target", "measured")]
    header = ["check (DD-02 4.4.2.4)", "target", "measured"]
    widths = [max(w, len(h)) for w, h in zip(widths, header, strict=True)]
    print()
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + "  result")
    print("  ".join("-" * w for w in widths) + "  ------")
    for r in rows:
        print(f"{r.check:<{widths[0]}}  {r.target:<{widths[1]}}  {r.measured:<{widths[2]}}  {r.result}")
    failed = [r for r in rows if r.result == "FAIL"]
    print()
    from tests.test_architecture import PRODUCER_PACKAGES

    print(f"[added]: a check the seed leaves out; [goal]: a goal of ours beyond the seed's; "
          f"the producer side is {', '.join(PRODUCER_PACKAGES)}")
    if args.smoke:
        unjudged = sum(r.result == NOT_JUDGED for r in rows)
        print(f"smoke run (small sizes): {len(rows) - len(failed) - unjudged} of {len(rows)} checks passed, "
              f"{len(failed)} failed, {unjudged} timing rows not judged; the smoke run took {took:.0f} s")
    else:
        print(f"{len(rows) - len(failed)} of {len(rows)} checks passed or not applicable, {len(failed)} failed; "
              f"{took / 60:.1f} minutes")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"rows": [asdict(r) for r in rows], "figures": raw, "minutes": round(took / 60, 1), "smoke": args.smoke},
            indent=2) + "\n")
        print(f"wrote {args.json}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
