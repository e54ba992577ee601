"""The retry policies of the topology: what a reader of `fitness.topology` is told."""

import subprocess
import sys

import pytest

from fitness import topology
from fitness.topology import RetryPolicy


def test_work_that_a_person_replays_keeps_the_seeds_1_2_4_seconds():
    for queue in topology.WORK_QUEUES:
        if queue.name != "equipment.fault":
            assert queue.retries.delays == [1, 2, 4], queue.name
    assert topology.retry_policy(None) == topology.retry_policy("not-a-queue") == topology.SEED_RETRIES


def test_a_fault_alert_retries_with_capped_backoff_for_15_minutes():
    policy = topology.work_queue("equipment.fault").retries

    assert policy.delays[:6] == [1, 2, 4, 8, 10, 10] and max(policy.delays) == 10
    assert 900 <= policy.total_delay < 910
    assert policy.describe() == "retries after 1 s, 2 s, 4 s, 8 s, 10 s, 10 s, … (93 retries): 905 s in all"


def test_a_policy_lasting_a_while_adds_up_to_at_least_that_long():
    assert RetryPolicy.lasting(0).delays == []
    assert RetryPolicy.lasting(3, max_delay=10).delays == [1, 2]
    assert RetryPolicy.lasting(100, max_delay=30).delays == [1, 2, 4, 8, 16, 30, 30, 30]
    with pytest.raises(ValueError):
        RetryPolicy(max_retries=1, first_delay=5, max_delay=2**28)  # beyond native delayed delivery


@pytest.mark.parametrize("value", ["soon", "-1"])
def test_a_fault_alert_retry_time_that_is_not_whole_seconds_stops_the_process_with_one_line(value):
    result = subprocess.run([sys.executable, "-c", "import fitness.topology"], capture_output=True, text=True,
                            env={"FAULT_ALERT_RETRY_SECONDS": value, "PATH": ""}, timeout=60)

    assert result.returncode != 0
    assert "FAULT_ALERT_RETRY_SECONDS must be" in result.stderr.strip().splitlines()[-1]
