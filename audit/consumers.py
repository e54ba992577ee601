"""The audit subscriber: every event of every type into the event log (`audit` queue).

One handler per event type (all its contract versions), all with the consumer name
`audit.record_event`; idempotent like every consumer (the event log's unique event_id and
the base's (consumer, event_id) record), so a redelivery records nothing twice.
"""

from __future__ import annotations

from audit.models import EventLogEntry
from fitness import topology
from messaging import contracts  # noqa: F401  (registers every contract)
from messaging.consumers import event_consumer
from messaging.events import Envelope, registered_contracts

CONSUMER = "audit.record_event"


def record_event(event, envelope: Envelope) -> None:
    task_id = envelope.payload.get("task_id")
    EventLogEntry.objects.create(
        event_id=envelope.event_id, event_type=envelope.event_type, schema_version=envelope.schema_version,
        producer=envelope.producer, correlation_id=envelope.correlation_id or "",
        task_id=task_id if isinstance(task_id, int) else None, occurred_at=envelope.occurred_at,
        payload=envelope.payload,
    )


def _subscribe_to_every_event_type() -> None:
    audited = next(queue for queue in topology.WORK_QUEUES if queue.name == topology.AUDIT_QUEUE)
    for event_type in audited.events:
        versions = [contract for contract in registered_contracts() if contract.event_type == event_type]
        event_consumer(*versions, name=CONSUMER, queue=topology.AUDIT_QUEUE)(record_event)


_subscribe_to_every_event_type()
