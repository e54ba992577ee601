"""The workers' consumer (fitness.worker_consumer): what it changes in Celery's."""

from types import SimpleNamespace

from fitness.celery import app
from fitness.worker_consumer import Consumer


def test_the_monitoring_events_connection_publishes_without_confirms():
    # the only connection a worker's consumer makes with connection_for_write is the events'
    consumer = SimpleNamespace(app=app, ensure_connected=lambda connection: connection)
    events = Consumer.connection_for_write(consumer)
    try:
        assert events.transport_options["confirm_publish"] is False
        assert events.default_channel.connection.confirm_publish is False  # a real connection to RabbitMQ
    finally:
        events.release()


def test_task_messages_keep_their_publisher_confirms():
    # retries and the relay publish through the app's own connections: confirmed
    with app.connection_for_write() as tasks:
        assert tasks.transport_options["confirm_publish"] is True
        assert tasks.default_channel.connection.confirm_publish is True
