"""benchmarks/verify.py's judgement: a smoke run never judges a timing, always a loss."""

from __future__ import annotations

import pytest

from benchmarks import verify


class Finished:
    """A benchmark that has run: its figures, as Benchmark.result() returns them."""

    def __init__(self, figures: dict | None, error: str = ""):
        self.figures, self.error = figures, error

    def result(self):
        return self.figures, self.error


SLOW_BUT_COMPLETE = {
    "consume_only_tasks_per_s": 3.0, "end_to_end_tasks_per_s": 2.5, "tasks_read": 60, "tasks": 60,
    "bare_pipeline_photos_per_s": 40.0,
}
AI_FIGURES = {
    **SLOW_BUT_COMPLETE, "end_to_end_vs_bare": 0.06, "ml_batch_max": 8, "light_tasks": 30, "light_tasks_read": 30,
    "light_latency": {"p50_ms": 400.0, "p99_ms": 900.0}, "saturation_latency": {"p50_ms": 900.0, "p99_ms": 2000.0},
    "saturation_batches": {"mean": 1.5},
}


@pytest.fixture
def smoke(monkeypatch):
    monkeypatch.setattr(verify, "SMOKE", True)


def test_a_smoke_run_prints_a_missed_timing_target_as_not_judged(smoke):
    row, _ = verify.throughput_row(2, Finished(SLOW_BUT_COMPLETE))
    assert row.result == "not judged (smoke)"
    row, _ = verify.publish_row(100, Finished({"mean_ms": 80.0, "p50_ms": 20.0, "p99_ms": 900.0,
                                               "blocked_caller_p50_ms": 20.0, "commit_to_queue_p50_ms": 30.0,
                                               "commit_to_queue_p99_ms": 90.0, "relay_events_per_s": 900.0,
                                               "unpublished_after_run": 0, "lost": 0}))
    assert row.result == "not judged (smoke)"


def test_a_full_run_judges_the_timing_target():
    row, _ = verify.throughput_row(3, Finished(SLOW_BUT_COMPLETE))
    assert row.result == "FAIL"


def test_a_smoke_run_fails_on_tasks_never_read_pushes_missing_or_a_benchmark_that_died(smoke):
    row, _ = verify.throughput_row(2, Finished({**SLOW_BUT_COMPLETE, "tasks_read": 59}))
    assert row.result == "FAIL"
    row, _ = verify.alert_row(Finished({"mean_ms": 100.0, "max_ms": 200.0, "p99_ms": 200.0, "pushes_received": 9,
                                        "faults": 10}))
    assert row.result == "FAIL"
    rows, _ = verify.fault_rows(Finished(None, "faults.py failed (exit 1) before writing figures"))
    assert [r.result for r in rows] == ["FAIL"] * 4


UPLOADS = {"requests_per_s": 70.0, "p99_ms": 400.0, "errors": 0, "ratio_to_floor": 0.13,
           "floor": {"requests_per_s": 540.0, "errors": 0}, "open_loop": {"errors": 0}}


def test_slow_uploads_are_judged_in_a_full_run_only_failed_ones_in_a_smoke_run_too(monkeypatch):
    row, _ = verify.upload_row(Finished(UPLOADS))
    assert row.result == "FAIL" and "0.13 of the floor's 540" in row.measured
    row, _ = verify.upload_row(Finished({**UPLOADS, "ratio_to_floor": 0.6, "p99_ms": 55.0}))
    assert row.result == "PASS"
    monkeypatch.setattr(verify, "SMOKE", True)
    row, _ = verify.upload_row(Finished(UPLOADS))
    assert row.result == "not judged (smoke)"
    row, _ = verify.upload_row(Finished({**UPLOADS, "errors": 3}))
    assert row.result == "FAIL" and "3 failed requests" in row.measured


def test_a_smoke_run_judges_losses_and_duplicates_of_the_fault_runs(smoke):
    ok = {"tasks": 24, "lost": 0, "duplicate_effects": 0, "redeliveries_skipped": 0}
    figures = {"consumer_killed": ok, "broker_restart": {**ok, "lost": 1},
               "broker_outage": {**ok, "duplicate_effects": 2}}
    rows, _ = verify.fault_rows(Finished(figures))
    assert [r.result for r in rows] == ["PASS", "FAIL", "PASS", "FAIL"]


def test_the_ai_goal_rows_are_timings_unless_a_light_load_task_is_never_read(smoke):
    rows = verify.ai_goal_rows(2, AI_FIGURES)
    assert [r.result for r in rows] == ["not judged (smoke)"] * 3
    rows = verify.ai_goal_rows(2, {**AI_FIGURES, "light_tasks_read": 29})
    assert rows[2].result == "FAIL"
    rows = verify.ai_goal_rows(2, None, "ai_throughput.py failed")
    assert [r.result for r in rows] == ["FAIL"] * 3


def test_a_full_run_judges_the_ai_goals():
    rows = verify.ai_goal_rows(3, AI_FIGURES)
    assert [r.result for r in rows] == ["FAIL"] * 3
    fast = {**AI_FIGURES, "end_to_end_tasks_per_s": 160.0, "end_to_end_vs_bare": 0.6,
            "light_latency": {"p50_ms": 40.0, "p99_ms": 90.0}}
    assert [r.result for r in verify.ai_goal_rows(3, fast)] == ["PASS"] * 3
