"""The Celery app of a worker with one more subscriber: `celery -A tests.late_subscriber worker -Q probe.late`.

The subscriber is declared before the Celery app is built (this is the module `-A` imports), as
a team would add a line to `fitness.topology.WORK_QUEUES`; its handler is
`tests.probe.consumers.late_subscriber`. The web process never imports this module
(tests/messaging/test_pubsub.py).
"""

from fitness import topology
from tests.probe.late import LATE_QUEUE, late_subscriber

if LATE_QUEUE not in topology.queue_names():
    topology.add_subscriber(late_subscriber())

from fitness.celery import app  # noqa: E402  (after the subscriber: the app's queues include it)

__all__ = ["app"]
