import time

from messaging.consumers import event_consumer
from messaging.errors import PermanentError, TransientError
from tests.probe.events import ProbeFailingEvent, ProbeRecordedEvent
from tests.probe.models import ProbeEffect


@event_consumer(ProbeRecordedEvent, name="tests.record_probe")
def record_probe(event: ProbeRecordedEvent, envelope) -> None:
    ProbeEffect.objects.create(
        label=event.label, event_id=envelope.event_id, correlation_id=envelope.correlation_id or ""
    )


@event_consumer(ProbeFailingEvent, name="tests.fail_probe")
def fail_probe(event: ProbeFailingEvent, envelope) -> None:
    with open(event.attempt_log, "a") as log:
        log.write(f"{time.time():.3f}\n")
    if event.permanent:
        raise PermanentError(f"probe {event.label} is broken for good")
    raise TransientError(f"probe {event.label} fails every time")
