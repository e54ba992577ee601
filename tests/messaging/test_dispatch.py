"""Which subscriber a copy of an event is for (messaging.consumers), without a broker."""

import pytest

from fitness.celery import app as celery_app
from messaging import consumers
from messaging.consumers import NoSubscriber, check_worker_queues, subscription_for

DELAYED = "0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0."  # native delayed delivery's prefix


@pytest.fixture(autouse=True)
def loaded(monkeypatch):
    celery_app.loader.import_default_modules()
    monkeypatch.setattr(consumers, "_WORKER_SUBSCRIPTIONS", {})


def test_a_copy_addressed_to_a_queue_goes_to_that_queues_subscriber():
    assert subscription_for("TaskSubmittedEvent", "task.submitted").consumer == "ml.read_task_photo"
    assert subscription_for("TaskSubmittedEvent", "audit").consumer == "audit.record_event"
    # a retry through native delayed delivery keeps the queue's name behind the delay prefix
    assert subscription_for("TaskSubmittedEvent", DELAYED + "audit").consumer == "audit.record_event"


def test_a_copy_published_with_the_event_type_goes_to_the_workers_one_subscriber_of_it():
    with pytest.raises(NoSubscriber, match="no subscriber of TaskSubmittedEvent for routing key"):
        subscription_for("TaskSubmittedEvent", "TaskSubmittedEvent")  # a worker with no queue of it

    consumers._WORKER_SUBSCRIPTIONS.update(check_worker_queues({"audit"}))
    assert subscription_for("TaskSubmittedEvent", "TaskSubmittedEvent").consumer == "audit.record_event"
    assert subscription_for("TaskAnalyzedEvent", "TaskAnalyzedEvent").consumer == "audit.record_event"


def test_every_pool_of_the_procfile_consumes_one_subscriber_queue_per_event_type():
    from fitness import topology

    for process in {queue.process for queue in topology.WORK_QUEUES}:
        chosen = check_worker_queues(set(topology.queues_for_process(process)))
        assert all(sub.queue in topology.queues_for_process(process) for sub in chosen.values()), process


def test_a_worker_of_two_subscribers_of_one_event_type_is_refused_in_one_line():
    with pytest.raises(ValueError) as refused:
        check_worker_queues({"task.submitted", "audit", "task.analyzed.push"})
    assert str(refused.value) == (
        "a worker consumes at most one subscriber queue per event type; these -Q queues share "
        "TaskAnalyzedEvent (audit, task.analyzed.push); TaskSubmittedEvent (audit, task.submitted): "
        "run them in separate workers"
    )


def test_a_second_handler_for_the_same_queue_and_event_type_is_refused():
    from messaging.consumers import event_consumer
    from messaging.contracts import TaskSubmittedEvent

    with pytest.raises(TypeError, match="already has the subscriber 'ml.read_task_photo' on queue 'task.submitted'"):
        event_consumer(TaskSubmittedEvent, name="someone.else", queue="task.submitted")(lambda event, envelope: None)
    with pytest.raises(TypeError, match="queue 'equipment.fault' is not a subscriber of TaskSubmittedEvent"):
        event_consumer(TaskSubmittedEvent, name="someone.else", queue="equipment.fault")
