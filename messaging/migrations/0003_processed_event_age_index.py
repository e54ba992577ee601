# The index the retention prune scans ProcessedEvent by (messaging/retention.py). Built
# CONCURRENTLY (outside a transaction), so a large table keeps taking writes meanwhile.

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("messaging", "0002_dead_letters"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="processedevent",
            index=models.Index(fields=["processed_at"], name="processed_event_age_idx"),
        ),
    ]
