"""The committed JSON Schemas of the events (messaging/schemas/) and the contracts agree."""

import json

import jsonschema
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from fitness.celery import app as celery_app
from messaging import contracts
from messaging.consumers import EventConsumerTask, subscriptions
from messaging.schemas import SCHEMA_DIR, differences, load_schema, published_contracts, schema_document


def test_every_contract_has_its_committed_schema_unchanged():
    # A failure here means a payload was edited: add a contract with the next
    # schema_version instead (published schemas never change), then `event_schemas --write`.
    assert differences() == []


@pytest.mark.parametrize("contract", published_contracts(), ids=lambda c: f"{c.event_type}.v{c.schema_version}")
def test_every_schema_is_a_valid_json_schema_that_names_its_event(contract):
    document = load_schema(contract.event_type, contract.schema_version)

    jsonschema.Draft202012Validator.check_schema(document)
    assert document["x-event-type"] == contract.event_type
    assert document["x-schema-version"] == contract.schema_version
    assert document["x-producer"] == contract.producer


def test_every_version_a_consumer_accepts_has_a_schema():
    celery_app.loader.import_default_modules()
    consumed = {
        (sub.event_type, version)
        for task in celery_app.tasks.values()
        if isinstance(task, EventConsumerTask)
        for sub in subscriptions(task.name)
        for version in sub.accepted
    }
    published = {(c.event_type, c.schema_version) for c in published_contracts()}
    assert ("TaskConfirmedEvent", 1) in consumed and ("TaskConfirmedEvent", 2) in consumed
    assert {pair for pair in consumed if not pair[0].startswith("Probe")} <= published


def test_a_payload_change_is_caught(monkeypatch, tmp_path):
    schema = schema_document(contracts.TaskSubmittedEvent)
    schema["properties"]["note"] = {"type": "string"}  # as if someone had edited the contract
    changed = tmp_path / "TaskSubmittedEvent.v1.json"
    for path in SCHEMA_DIR.glob("*.json"):
        (tmp_path / path.name).write_text(path.read_text())
    changed.write_text(json.dumps(schema))
    monkeypatch.setattr("messaging.schemas.SCHEMA_DIR", tmp_path)

    assert [(d.path.name, d.problem) for d in differences()] == [("TaskSubmittedEvent.v1.json", "changed")]
    with pytest.raises(CommandError, match="disagree with messaging/contracts.py"):
        call_command("event_schemas", stderr=open("/dev/null", "w"))
    with pytest.raises(CommandError, match="a published schema does not change"):
        call_command("event_schemas", "--write")


def test_the_old_and_the_new_version_of_an_event_validate_against_their_own_schema():
    v1 = {"task_id": 1, "branch_id": 2, "photo": "tasks/2/a.jpg", "ai_labels": {"garment": "sock"},
          "confirmed_labels": {"garment": "sock"}, "model_version": "v1", "confirmed_by": 3}
    jsonschema.validate(v1, load_schema("TaskConfirmedEvent", 1))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(v1, load_schema("TaskConfirmedEvent", 2))  # v2 needs the hash, the time, known labels
