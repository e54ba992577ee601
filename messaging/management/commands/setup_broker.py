from django.core.management.base import BaseCommand, CommandError

from fitness import topology
from fitness.celery import app as celery_app
from fitness.environment import placeholder_problem


class Command(BaseCommand):
    help = (
        "Declare the RabbitMQ topology of fitness/topology.py: the event and dead-letter "
        "exchanges, every quorum work queue with its dead-letter queue, the dead-letter "
        "archive queue, and Celery's "
        "delayed-delivery queues. Idempotent: running it again changes nothing. Run it "
        "before starting workers and publishers: none of them declares anything. A dead-letter "
        "or archive queue declared by an older set-up with other arguments (e.g. before an "
        "upgrade to RabbitMQ 4) is kept and reported; --recreate-outdated replaces the empty ones."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--dry-run", action="store_true", help="List what would be declared without connecting to RabbitMQ."
        )
        parser.add_argument(
            "--recreate-outdated", action="store_true",
            help="Delete and declare again every empty dead-letter or archive queue that an older set-up "
                 "declared with other arguments (e.g. after an upgrade to RabbitMQ 4). Run it with the workers "
                 "and the archiver stopped: a quorum queue cannot be deleted only-if-empty.",
        )

    def handle(self, *args, dry_run: bool = False, recreate_outdated: bool = False, **options):
        if dry_run:
            self.stdout.write(f"exchanges: {topology.EVENTS_EXCHANGE.name} (topic), "
                              f"{topology.DEAD_LETTER_EXCHANGE.name} (direct)")
            for queue in topology.WORK_QUEUES:
                keys = ", ".join((*queue.events, queue.name))
                self.stdout.write(
                    f"queue {queue.name:<20} -> {queue.dead_letter_queue_name:<24} "
                    f"consumed by {queue.process:<14} keys {keys}; {queue.arguments}"
                )
            self.stdout.write(
                f"dead-letter and archive queues: {topology.holding_queue_arguments(3)} on RabbitMQ 3.x, "
                f"{topology.holding_queue_arguments(4)} on 4.x (no delivery limit on either)"
            )
            self.stdout.write(
                f"queue {topology.DEAD_LETTER_ARCHIVE_QUEUE:<20} <- every dead letter (keys "
                f"{', '.join(topology.queue_names())}), consumed by {topology.DEAD_LETTER_ARCHIVE_PROCESS}"
            )
            return
        if problem := placeholder_problem():
            raise CommandError(problem)
        connection = celery_app.connection_for_write()
        where = connection.as_uri()  # the password is masked
        try:
            connection.ensure_connection(max_retries=3)
            result = topology.declare_topology(connection, recreate_outdated=recreate_outdated)
        except Exception as exc:
            text = str(exc)
            if "PRECONDITION_FAILED" in text or getattr(exc, "code", None) == 406:
                raise CommandError(
                    f"RabbitMQ refused a declaration because an existing queue or exchange has other "
                    f"arguments: {text}. Drain and delete it, then run setup_broker again."
                ) from exc
            raise CommandError(f"cannot set up RabbitMQ at {where}: {exc}") from exc
        finally:
            connection.release()
        for line in result.declared:
            self.stdout.write(f"  declared {line}")
        for problem in result.problems:
            self.stderr.write(self.style.WARNING(f"  not up to date: {problem}"))
        self.stdout.write(self.style.SUCCESS(
            f"RabbitMQ topology ready at {where}: "
            f"{len(topology.WORK_QUEUES)} work queues, {len(topology.WORK_QUEUES)} dead-letter queues, "
            f"the dead-letter archive queue"
            + (f" ({len(result.problems)} not up to date, see above)" if result.problems else "")
        ))
