"""The `dead-letters` process: consumes `dead-letters.archive` and records every dead letter in PostgreSQL.

Documented in docs/operating.md (*Dead letters*) and docs/architecture.md (*Consumers*).
"""

import logging
import signal
import time

from django.core.management.base import BaseCommand
from django.db import close_old_connections
from kombu.mixins import ConsumerMixin

from fitness import topology
from fitness.celery import app as celery_app
from fitness.logging import envelope_log_fields
from messaging.dead_letters.archive import dead_letter_archive
from messaging.dead_letters.messages import parse_raw_dead_letter
from messaging.dead_letters.sweep import return_to_queue
from observability.exporter import start_exporter

logger = logging.getLogger("messaging.dead_letters")

PREFETCH = 20
DATABASE_RETRY_SECONDS = 2.0


class Archiver(ConsumerMixin):
    """Consumes the dead-letter archive queue; one database transaction per dead letter.

    A plain kombu consumer, not a Celery worker: the messages in the archive queue are
    Celery task messages, and a Celery worker would run them. A message is acknowledged
    after its record committed, and recording is idempotent, so a crash in between
    records nothing twice. kombu's ConsumerMixin reconnects when RabbitMQ goes away.
    """

    def __init__(self, command: "Command", *, once: bool = False):
        self.connection = celery_app.connection_for_read()
        self.command = command
        self.once = once
        self.archived = 0
        self.idle_since = time.monotonic()

    def get_consumers(self, Consumer, channel):
        # setup_broker declares the queue (its arguments depend on the RabbitMQ version)
        return [Consumer(queues=[topology.dead_letter_archive_queue()], on_message=self.on_message,
                         prefetch_count=PREFETCH, auto_declare=False)]

    def on_message(self, message) -> None:
        self.idle_since = time.monotonic()
        queue = (message.delivery_info or {}).get("routing_key") or ""
        dead_letter = parse_raw_dead_letter(queue, message.headers, message.body, message.content_type,
                                            message.content_encoding)
        try:
            close_old_connections()
            result = dead_letter_archive(dead_letter)
        except Exception as exc:  # PostgreSQL is unavailable: keep the message, try again soon
            logger.warning("could not archive %s, retrying: %s", dead_letter.event_id, exc,
                           extra=envelope_log_fields(dead_letter.envelope))
            time.sleep(DATABASE_RETRY_SECONDS)
            # returned with a nack, which RabbitMQ 4.3+ does not count as a failed delivery;
            # the archive queue has no delivery limit either (fitness.topology)
            return_to_queue(message.channel, message.delivery_tag)
            return
        message.ack()
        if result.new_death:
            self.archived += 1
            hook = "; the consumer's dead-letter hook ran" if result.hook_ran else ""
            logger.info(
                "archived: queue=%s event_type=%s event_id=%s reason=%s deaths=%s%s", queue, dead_letter.event_type,
                dead_letter.event_id, dead_letter.reason, result.record.deaths, hook,
                extra={**envelope_log_fields(dead_letter.envelope), "queue": queue, "reason": dead_letter.reason},
            )

    def on_connection_error(self, exc, interval):
        logger.warning("RabbitMQ connection lost, reconnecting in %s s: %s", interval, exc)

    def on_iteration(self):
        if self.once and time.monotonic() - self.idle_since > 1.0:
            self.should_stop = True


class Command(BaseCommand):
    help = (
        "Record every dead letter in PostgreSQL (the `dead-letters` process). RabbitMQ copies "
        "each dead letter of every work queue to the queue dead-letters.archive; this keeps "
        "one record per event and queue (error, reason, deaths, times), searchable in the "
        "admin under Messaging > Dead letters and kept after a replay or purge. For a message "
        "dead-lettered by the delivery limit (its worker died, so the consumer could not say "
        "it failed) it also runs the consumer's dead-letter hook, e.g. marking the task failed. "
        "Runs until SIGTERM/SIGINT; several may run at once."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--once", action="store_true", help="Archive what is waiting now and exit (when idle for 1 s)."
        )

    def handle(self, *args, once: bool = False, **options):
        archiver = Archiver(self, once=once)

        def stop(signum, frame):
            archiver.should_stop = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        start_exporter()  # its own /metrics when METRICS_EXPORTER_PORT is set (a pod of its own)
        logger.info(
            "dead-letter archiver consuming %s at %s", topology.DEAD_LETTER_ARCHIVE_QUEUE, archiver.connection.as_uri()
        )
        archiver.run()  # sees a stop request within 1 s
        logger.info("dead-letter archiver stopped (%s dead letter(s) archived)", archiver.archived)
