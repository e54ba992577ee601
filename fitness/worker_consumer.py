"""The workers' consumer: Celery's, without the DelayedDelivery bootstep, and losing nothing.

DelayedDelivery. That step declares the native delayed-delivery exchanges and queues, and
binds the work queues to them, every time the consumer (re)starts, once per broker URL:
given a cluster's failover URLs (CELERY_BROKER_URL="amqp://n1;amqp://n2;amqp://n3") it
takes each node for a broker of its own and, when one is down, retries it for about 17 s
before the worker consumes again (benchmarks/cluster_failover.py measured a 17.7 s pause
when the first node was stopped). `manage.py setup_broker` declares the same exchanges,
queues and bindings (fitness.topology.declare_topology) before any worker starts, once for
the cluster, so the step adds nothing here but that pause.

Unreadable messages. Celery rejects (requeue=False) a message that is not a task message
(`on_unknown_message`), names a task nobody registered (`on_unknown_task`) or is malformed
(`on_invalid_task`), so the work queue dead-letters it to its `.dlq`. But a body it cannot
decode (not UTF-8, not JSON, or a content type outside `accept_content`, e.g. text/plain
published by hand in the management UI) goes to `on_decode_error`, which *acknowledges* it:
the message would be gone. Here it is rejected like the others, so it reaches the `.dlq`
with its body intact and the dead-letter archiver records it (DG-04 in docs/decisions.md: nothing accepted is
lost).

Monitoring events without publisher confirms. The settings turn confirms on for every
connection (CELERY_BROKER_TRANSPORT_OPTIONS): a retry's new message must be in the queue
before the old one is acknowledged. The events Flower shows (task-received, -started,
-succeeded) are monitoring data that RabbitMQ drops anyway when no monitor listens; with
confirms each one cost a broker round trip in the worker's main loop, which also receives
the messages (8% of an AI worker's samples at saturation, with RabbitMQ's CPU for the
confirms). Only the events step asks the consumer for `connection_for_write`, so its
connection is the one made without them.

Celery's own extension point, the `worker_consumer` setting, selects this class.
"""

import logging

from celery import signals
from celery.utils.log import get_logger
from celery.worker.consumer import Consumer as CeleryConsumer
from kombu.utils.encoding import safe_repr

DELAYED_DELIVERY_STEP = "celery.worker.consumer.delayed_delivery:DelayedDelivery"

logger = get_logger("celery.worker.consumer.consumer")


class Consumer(CeleryConsumer):
    class Blueprint(CeleryConsumer.Blueprint):
        default_steps = [step for step in CeleryConsumer.Blueprint.default_steps if step != DELAYED_DELIVERY_STEP]

    def connection_for_write(self, url=None, heartbeat=None):
        """The events' connection (see the module docstring): no publisher confirms."""
        return self.ensure_connected(self.app.connection_for_write(
            url=url, heartbeat=heartbeat, transport_options={"confirm_publish": False}))

    def on_decode_error(self, message, exc):
        """Dead-letter a message whose body cannot be decoded, instead of dropping it."""
        body = message.body if isinstance(message.body, bytes | bytearray) else str(message.body).encode()
        logger.log(
            logging.ERROR,
            "Can't decode message body, dead-lettering it: %r [type:%s encoding:%s headers:%s] body: %s (%sb)",
            exc, message.content_type, message.content_encoding, safe_repr(message.headers),
            safe_repr(bytes(body[:256])), len(body),
        )
        message.reject_log_error(logger, self.connection_errors)
        signals.task_rejected.send(sender=self, message=message, exc=exc)
