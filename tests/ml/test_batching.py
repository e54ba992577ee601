"""ml.batching: many threads hand in items, one thread runs them in batches (no torch, no database)."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from ml.batching import Batcher


class Recorder:
    """A run_batch that doubles numbers, remembers each batch and can be told to fail or stall."""

    def __init__(self, seconds: float = 0.0):
        self.batches: list[list] = []
        self.seconds = seconds

    def __call__(self, items: list) -> list:
        self.batches.append(list(items))
        time.sleep(self.seconds)
        if "boom" in items:
            raise RuntimeError("the forward pass failed")
        return [ValueError(f"cannot read {item}") if item == "bad" else item * 2 for item in items]


def submit_at_once(batcher: Batcher, items: list) -> list:
    """Submit every item from its own thread, released together; their futures, in order."""
    barrier = threading.Barrier(len(items))

    def one(item):
        barrier.wait()
        return batcher.submit(item)

    with ThreadPoolExecutor(len(items)) as pool:
        return [f.result() for f in [pool.submit(one, item) for item in items]]


def test_a_photo_alone_is_held_no_longer_than_the_wait():
    run = Recorder()
    batcher = Batcher(run, max_size=8, max_wait=0.05)
    batcher.submit(0).result(timeout=5)  # the thread is up

    started = time.monotonic()
    assert batcher.submit(21).result(timeout=5) == 42
    took = time.monotonic() - started

    assert run.batches[-1] == [21]
    assert 0.04 < took < 0.5, f"held {took * 1000:.0f} ms for a wait of 50 ms"


def test_no_wait_runs_at_once():
    batcher = Batcher(Recorder(), max_size=8, max_wait=0)
    started = time.monotonic()
    assert batcher.submit(1).result(timeout=5) == 2
    assert time.monotonic() - started < 0.2


def test_items_handed_in_together_share_a_pass_and_each_gets_its_own_result():
    run = Recorder()
    batcher = Batcher(run, max_size=8, max_wait=0.5)
    futures = submit_at_once(batcher, list(range(8)))

    assert [f.result(timeout=5) for f in futures] == [i * 2 for i in range(8)]
    assert sorted(run.batches[0]) == list(range(8)), "a full batch runs without waiting for the deadline"


def test_the_batch_size_is_at_most_max_size():
    run = Recorder(seconds=0.05)  # while one pass runs, the rest gathers
    sizes = []
    batcher = Batcher(run, max_size=4, max_wait=0.02, on_batch=lambda size, seconds: sizes.append(size))
    futures = submit_at_once(batcher, list(range(19)))

    assert sorted(f.result(timeout=10) for f in futures) == sorted(i * 2 for i in range(19))
    assert max(len(b) for b in run.batches) == 4
    assert sum(len(b) for b in run.batches) == 19
    assert sizes == [len(b) for b in run.batches]


def test_a_failed_forward_pass_fails_each_waiter_not_the_batcher():
    run = Recorder()
    batcher = Batcher(run, max_size=4, max_wait=0.2)
    futures = submit_at_once(batcher, [1, "boom", 3, 4])

    for future in futures:
        with pytest.raises(RuntimeError, match="the forward pass failed"):
            future.result(timeout=5)
    assert batcher.submit(5).result(timeout=5) == 10, "the next batch runs"


def test_an_item_that_fails_alone_fails_only_its_own_waiter():
    batcher = Batcher(Recorder(), max_size=3, max_wait=0.2)
    good, bad, other = submit_at_once(batcher, [1, "bad", 3])

    assert good.result(timeout=5) == 2 and other.result(timeout=5) == 6
    with pytest.raises(ValueError, match="cannot read bad"):
        bad.result(timeout=5)


def test_a_wrong_number_of_results_fails_the_batch():
    batcher = Batcher(lambda items: items[:-1], max_size=2, max_wait=0.2)
    futures = submit_at_once(batcher, [1, 2])
    for future in futures:
        with pytest.raises(RuntimeError, match="1 results for a batch of 2"):
            future.result(timeout=5)


@pytest.mark.parametrize("kwargs", [{"max_size": 0, "max_wait": 0.01}, {"max_size": 2, "max_wait": -1}])
def test_nonsense_limits_are_refused(kwargs):
    with pytest.raises(ValueError):
        Batcher(Recorder(), **kwargs)
