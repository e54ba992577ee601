# The index the retention prune scans telemetry readings by (monitoring/retention.py). Built
# CONCURRENTLY (outside a transaction), so ingest keeps writing meanwhile.

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations, models


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("monitoring", "0002_fault_acknowledged"),
    ]

    operations = [
        AddIndexConcurrently(
            model_name="telemetryreading",
            index=models.Index(fields=["received_at"], name="reading_received_at_idx"),
        ),
    ]
