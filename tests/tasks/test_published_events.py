"""The producer side of DG-03 (docs/decisions.md): what `tasks` publishes validates against the committed schemas."""

import jsonschema
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from messaging.models import OutboxMessage
from messaging.schemas import load_schema
from tests import factories

pytestmark = pytest.mark.django_db


def test_every_event_of_an_upload_and_its_confirmation_matches_its_schema():
    owner = factories.user(staff=True)
    branch = factories.branch(owner=owner)
    helper = factories.helper(branch)
    photo = SimpleUploadedFile("laundry.jpg", factories.photo_bytes(), content_type="image/jpeg")
    submitted = factories.api_client_for(helper).post("/api/v1/tasks/", {"photo": photo}, format="multipart")
    assert submitted.status_code == 202
    task = factories.analyzed_task(at=branch)
    confirmed = factories.api_client_for(owner).post(f"/api/v1/tasks/{task.pk}/confirm/", format="json")
    assert confirmed.status_code == 200

    published = list(OutboxMessage.objects.order_by("id"))

    assert [row.event_type for row in published] == ["TaskSubmittedEvent", "TaskConfirmedEvent"]
    for row in published:
        envelope = row.envelope
        assert (envelope["event_type"], envelope["schema_version"]) == (row.event_type, row.schema_version)
        jsonschema.validate(envelope["payload"], load_schema(row.event_type, row.schema_version))
