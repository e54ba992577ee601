"""The declaration of the subscriber that tests/messaging/test_pubsub.py adds while the web runs."""

from fitness import topology

LATE_QUEUE = "probe.late"


def late_subscriber() -> topology.Subscriber:
    return topology.Subscriber(LATE_QUEUE, "a subscriber added after the web process started", "worker-late",
                               events=("TaskSubmittedEvent",))
