"""Event contracts and the envelope, without a broker."""

import uuid

import pytest

from fitness import topology
from messaging import contracts
from messaging.errors import InvalidEvent, UnknownEvent
from messaging.events import Envelope, contract_for, parse_message, registered_contracts

PRODUCT_CONTRACTS = [
    contracts.TaskSubmittedEvent,
    contracts.TaskConfirmedEvent,
    contracts.EquipmentFaultEvent,
    contracts.BranchPreferenceCreatedEvent,
    contracts.TaskAnalyzedEvent,
]


@pytest.mark.parametrize("contract", PRODUCT_CONTRACTS, ids=lambda c: c.event_type)
def test_every_product_event_is_registered_and_has_subscribers_and_the_audit_trail(contract):
    assert contract_for(contract.event_type, contract.schema_version) is contract
    assert topology.routing_key_for_event(contract.event_type) == contract.event_type
    subscribers = {queue.name for queue in topology.subscribers_of(contract.event_type)}
    assert topology.AUDIT_QUEUE in subscribers and len(subscribers) >= 2, subscribers


def test_the_topologys_event_types_are_exactly_the_published_contracts():
    published = {c.event_type for c in registered_contracts() if c.__module__ == contracts.__name__}
    assert set(topology.EVENT_TYPES) == published
    for queue in topology.WORK_QUEUES:
        assert set(queue.events) <= published, queue.name


def test_an_envelope_survives_the_json_round_trip():
    event = contracts.TaskSubmittedEvent(task_id=1, branch_id=2, helper_id=3, photo="tasks/1.jpg")
    body = Envelope.wrap(event, correlation_id="req-1").as_message_body()

    envelope, parsed = parse_message(body)

    assert parsed == event
    assert envelope.correlation_id == "req-1"
    assert envelope.schema_version == 1 and envelope.producer == "tasks"
    assert envelope.occurred_at.tzinfo is not None


@pytest.mark.parametrize(
    "mutate, error, match",
    [
        (lambda b: b.pop("event_id"), InvalidEvent, "event_id: Field required"),
        (lambda b: b.update(event_id="not-a-uuid"), InvalidEvent, "event_id"),
        (lambda b: b.update(occurred_at="2026-11-25T10:00:00"), InvalidEvent, "occurred_at"),
        (lambda b: b.update(schema_version=9), UnknownEvent, r"known versions: \[1\]"),
        (lambda b: b.update(event_type="Nope"), UnknownEvent, "no such event type"),
        (lambda b: b["payload"].update(task_id="seven"), InvalidEvent, "payload invalid: task_id"),
        (lambda b: b["payload"].update(extra=1), InvalidEvent, "extra: Extra inputs are not permitted"),
    ],
)
def test_a_malformed_message_is_a_permanent_error_that_names_the_field(mutate, error, match):
    event = contracts.TaskSubmittedEvent(task_id=1, branch_id=2, helper_id=3, photo="tasks/1.jpg")
    body = Envelope.wrap(event, correlation_id=None).as_message_body()
    mutate(body)

    with pytest.raises(error, match=match):
        parse_message(body)


def test_a_message_that_is_not_even_a_dict_is_invalid():
    with pytest.raises(InvalidEvent):
        parse_message(["not", "a", "dict"])


def test_two_contracts_cannot_claim_the_same_type_and_version():
    with pytest.raises(TypeError, match="already registered"):

        class Impostor(contracts.Event):
            event_type = "TaskSubmittedEvent"
            schema_version = 1
            producer = "elsewhere"


def test_envelope_ids_are_unique():
    event = contracts.BranchPreferenceCreatedEvent(branch_id=1, offer_id=1)
    ids = {Envelope.wrap(event, correlation_id=None).event_id for _ in range(100)}
    assert len(ids) == 100 and all(isinstance(i, uuid.UUID) for i in ids)
