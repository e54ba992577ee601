"""Fault tests run against a RabbitMQ node of their own, which they stop, restart and break.

The shared RabbitMQ on 127.0.0.1:5672 is never touched: the session starts a private node
(`tests.rabbitmq_node`, about 5-10 s) and every test here publishes to it and starts its
workers, relay and archiver against it, with this run's PostgreSQL database.
"""

import pytest
from django.core.management import call_command

from tests.support import drain_queue, private_rabbitmq_node, use_broker

# the AI consumer's model, trained once per module that uses it
from tests.tasks.test_ai_reading import active_model, trained_model_row  # noqa: F401


@pytest.fixture(scope="session")
def rabbitmq_node():
    with private_rabbitmq_node("fault tests") as node:
        yield node


@pytest.fixture
def private_broker(rabbitmq_node, django_db_setup):
    """Publish to the private node for this test; leave its work and dead-letter queues empty."""
    with use_broker(rabbitmq_node.url):
        if not rabbitmq_node.accepts_connections():  # a test before this one left it stopped
            rabbitmq_node.start_app()
        call_command("setup_broker", verbosity=0, stdout=open("/dev/null", "w"))
        yield rabbitmq_node
        for name in ("task.submitted", "task.submitted.dlq", "dead-letters.archive"):
            drain_queue(name)
