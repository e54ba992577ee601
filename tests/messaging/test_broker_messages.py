"""The relay's prepared messages carry what Celery's own publish carried, byte for byte decoded."""

import json

import amqp
from amqp.basic_message import Message

from fitness.celery import app as celery_app
from messaging.broker import _MessageTemplate


def decoded(properties: bytes) -> dict:
    message = Message()
    message._load_properties(60, properties, 0)  # 60: the basic class
    return message.properties


def celery_message(body: dict, extra: dict | None) -> amqp.Message:
    """What the relay sent before: Celery's as_task_v2, published by kombu (json, persistent)."""
    headers, properties, payload, _ = celery_app.amqp.as_task_v2(
        str(body["event_id"]), body["event_type"], kwargs={"event": body}, ignore_result=True,
        argsrepr="()", kwargsrepr=json.dumps({"event": body}, separators=(",", ":"))[:2000],
    )
    headers.update(event_type=body["event_type"], event_id=str(body["event_id"]),
                   schema_version=body["schema_version"], correlation_id=body.get("correlation_id") or "")
    headers.update(extra or {})
    return amqp.Message(json.dumps(payload), content_type="application/json", content_encoding="utf-8",
                        application_headers=headers, delivery_mode=2, priority=0, **properties)


def test_prepared_message_equals_celerys():
    body = {"event_id": "7b0c1f0e-0000-4000-8000-000000000001", "event_type": "TaskSubmittedEvent",
            "schema_version": 1, "correlation_id": "req-1", "payload": {"task_id": 5, "note": "é" * 1500}}
    for extra in (None, {"x-replay": 2}):
        ours = _MessageTemplate().message(body, extra)
        theirs = celery_message(body, extra)
        assert decoded(ours._serialize_properties()) == decoded(theirs._serialize_properties())
        assert json.loads(ours.body) == json.loads(theirs.body)
        assert len(decoded(ours._serialize_properties())["application_headers"]["kwargsrepr"]) == 2000
