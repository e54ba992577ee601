#!/usr/bin/env python
"""Table sizes and prune throughput for a month of the demo network's traffic.

A month (30 days) of rows is inserted in PostgreSQL with generate_series, spread evenly over
the month in insertion order (as traffic appends them), in a database of its own that is
removed at the end. Then the real prune (messaging.retention, the code beat and
`manage.py prune` run) runs twice, in batches of RETENTION_BATCH_SIZE:

1. "at month end": with the default retentions, as beat would at the end of the month;
2. "everything": with a cutoff after the last row, to measure each table's delete rate on
   all its rows.

Sizes are pg_total_relation_size (heap, indexes, TOAST): before, after the prune (on disk,
after a plain VACUUM; PostgreSQL reuses the freed space for new rows), and compacted (VACUUM
FULL: the size the table settles at once freed space is reused).

Traffic (the demo network: 2 branches x 3 machines), per second unless said:
  uploads 60/s: one TaskSubmittedEvent each (one ProcessedEvent, the AI consumer), and 10%
    confirmed by owners (a TaskConfirmedEvent, one more ProcessedEvent): 66 records/s;
  telemetry: 1 reading per machine per 10 s: 0.6/s;
  dead letters: 0.1% of events (0.066/s), 90% of them replayed or purged;
  notifications: 1 fault alert per machine per day to its owner, and per branch 1 offer a day
    recommended to 1,000 customers (one device each): about 2,000/day, one push delivery each.
ProcessedEvent is by far the largest (171 M rows a month); --scale inserts that fraction of
its rows (default 0.01) and the table extrapolates size to the full month linearly. The other
tables are inserted in full.

    python benchmarks/retention.py [--scale 0.01] [--batch-size 5000] [--json FILE] [--smoke]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MONTH_SECONDS = 30 * 24 * 3600
UPLOADS_PER_S = 60
CONFIRMED_SHARE = 0.10
READINGS_PER_S = 6 / 10
DEAD_LETTER_SHARE = 0.001
CUSTOMERS = 1000
NOTIFICATIONS_PER_DAY = 6 + 2 * CUSTOMERS


SMOKE_SHARE = 0.0005


def month_rows(scale: float, smoke: bool) -> dict[str, int]:
    small = SMOKE_SHARE if smoke else 1.0
    events_per_s = UPLOADS_PER_S * (1 + CONFIRMED_SHARE)
    return {
        "processed-events": int(events_per_s * MONTH_SECONDS * scale * small),
        "telemetry": int(READINGS_PER_S * MONTH_SECONDS * small),
        "dead-letters": int(events_per_s * DEAD_LETTER_SHARE * MONTH_SECONDS * small),
        "notifications": int(NOTIFICATIONS_PER_DAY * 30 * small),
    }


def insert_month(rows: dict[str, int], *, start, end) -> None:
    """generate_series inserts, row i at start + i/n of the month (insertion order = time order)."""
    from django.contrib.auth import get_user_model
    from django.db import connection

    from branches.models import Branch
    from messaging.models import DeadLetter, ProcessedEvent
    from monitoring.models import Equipment, TelemetryReading
    from notifications.models import DeviceToken, Notification, PushDelivery

    user = get_user_model()
    owner = user.objects.create_user("bench-owner", password="x")
    equipment = []
    for b in range(2):
        branch = Branch.objects.create(code=f"bench-{b}", name=f"Bench {b}", owner=owner)
        for m in range(3):
            equipment.append(Equipment.objects.create(
                branch=branch, kind="washer", name=f"washer-{m}", api_key_hash=f"{b}{m}".ljust(64, "0"),
                api_key_prefix=f"{b}{m}",
            ).pk)
    span = (end - start).total_seconds()
    with connection.cursor() as cursor:
        def run(what: str, sql: str, params: list) -> None:
            began = time.monotonic()
            cursor.execute(sql, params)
            print(f"  inserted {cursor.rowcount:>11,} {what} in {time.monotonic() - began:.1f} s", file=sys.stderr)

        def at(n: int) -> str:  # the time of row i of n
            return f"%s::timestamptz + (i * {span / max(n, 1)!r}) * interval '1 second'"

        n = rows["processed-events"]
        run("processed events", f"""
            INSERT INTO {ProcessedEvent._meta.db_table} (consumer, event_id, event_type, processed_at)
            SELECT CASE WHEN i %% 11 = 0 THEN 'ml.collect_training_sample' ELSE 'ml.read_task_photo' END,
                   md5(i::text)::uuid,
                   CASE WHEN i %% 11 = 0 THEN 'TaskConfirmedEvent' ELSE 'TaskSubmittedEvent' END,
                   {at(n)}
            FROM generate_series(1, %s) AS i""", [start, n])
        n = rows["telemetry"]
        run("telemetry readings", f"""
            INSERT INTO {TelemetryReading._meta.db_table}
                (equipment_id, recorded_at, received_at, error_code, temperature_c, vibration_g, door_open,
                 cycle_state)
            SELECT (%s::bigint[])[1 + i %% 6], {at(n)}, {at(n)}, '', 40 + (i %% 50), (i %% 20) / 10.0,
                   false, 'washing'
            FROM generate_series(1, %s) AS i""", [equipment, start, start, n])
        n = rows["dead-letters"]
        run("dead letters", f"""
            INSERT INTO {DeadLetter._meta.db_table}
                (queue, event_id, event_type, consumer, envelope, reason, error, attempts, deaths, death_key,
                 first_dead_at, last_dead_at, failed_at, replays, replayed_at, replayed_by, purges, purged_at,
                 purged_by, created_at)
            SELECT 'task.submitted', md5('dl' || i)::uuid::text, 'TaskSubmittedEvent', 'ml.read_task_photo',
                   jsonb_build_object('event_id', md5('dl' || i)::uuid, 'event_type', 'TaskSubmittedEvent',
                                      'schema_version', 1, 'payload', jsonb_build_object('task_id', i)),
                   'rejected', 'OSError: the photo storage timed out', 4, 1, '', t, t, t,
                   CASE WHEN i %% 10 < 6 THEN 1 ELSE 0 END, CASE WHEN i %% 10 < 6 THEN t END,
                   CASE WHEN i %% 10 < 6 THEN 'ops' ELSE '' END,
                   CASE WHEN i %% 10 IN (6, 7, 8) THEN 1 ELSE 0 END, CASE WHEN i %% 10 IN (6, 7, 8) THEN t END,
                   CASE WHEN i %% 10 IN (6, 7, 8) THEN 'ops' ELSE '' END, t
            FROM (SELECT i, {at(n)} AS t FROM generate_series(1, %s) AS i) AS s""", [start, n])
        run("customers", f"""
            INSERT INTO {user._meta.db_table}
                (password, is_superuser, username, first_name, last_name, email, is_staff, is_active, date_joined)
            SELECT '!', false, 'bench-customer-' || i, '', '', '', false, true, now()
            FROM generate_series(1, %s) AS i""", [CUSTOMERS])
        run("device tokens", f"""
            INSERT INTO {DeviceToken._meta.db_table}
                (user_id, token, platform, is_active, created_at, updated_at, deactivation_reason)
            SELECT id, 'bench-token-' || id, 'android', true, now(), now(), ''
            FROM {user._meta.db_table} WHERE username LIKE 'bench-customer-%%'""", [])
        n = rows["notifications"]
        run("notifications", f"""
            INSERT INTO {Notification._meta.db_table}
                (recipient_id, kind, key, event_id, title, body, data, status, attempts, provider_message_id,
                 error, created_at, updated_at)
            SELECT u.id, 'recommendation', 'recommendation:' || i, md5('n' || i)::uuid,
                   'Mapo Riverside Laundry: a fifth off drying', 'Your laundry nearby has an offer you asked for.',
                   jsonb_build_object('branch_id', 1, 'offer_id', i), 'sent', 1,
                   'projects/demo/messages/' || md5('m' || i), '', t, t
            FROM (SELECT i, {at(n)} AS t FROM generate_series(1, %s) AS i) AS s
            JOIN (SELECT id, row_number() OVER (ORDER BY id) - 1 AS k FROM {user._meta.db_table}
                  WHERE username LIKE 'bench-customer-%%') AS u ON u.k = i %% {CUSTOMERS}""", [start, n])
        run("push deliveries", f"""
            INSERT INTO {PushDelivery._meta.db_table}
                (notification_id, device_id, status, attempts, provider_message_id, error, last_attempt_at, sent_at)
            SELECT n.id, d.id, 'sent', 1, n.provider_message_id, '', n.created_at, n.created_at
            FROM {Notification._meta.db_table} AS n JOIN {DeviceToken._meta.db_table} AS d
                 ON d.user_id = n.recipient_id""", [])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def table_sizes(targets) -> dict[str, dict]:
    from django.db import connection

    sizes = {}
    with connection.cursor() as cursor:
        for target in targets:
            table = target.model._meta.db_table
            cursor.execute(f"SELECT count(*), pg_total_relation_size(%s) FROM {table}", [table])
            count, size = cursor.fetchone()
            sizes[target.name] = {"rows": count, "mb": round(size / 1e6, 2)}
    return sizes


def vacuum(targets, *, full: bool) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        for target in targets:
            cursor.execute(f"VACUUM {'FULL ' if full else ''}ANALYZE {target.model._meta.db_table}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=0.01,
                        help="the share of ProcessedEvent's month of rows to insert (default: 0.01 = 1.7 M rows)")
    parser.add_argument("--batch-size", type=int, default=None, help="rows per prune batch (default: the setting)")
    parser.add_argument("--smoke", action="store_true", help="a tiny run (0.05%% of every table) to check it works")
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE as JSON")
    args = parser.parse_args()
    if not 0 < args.scale <= 1:
        parser.error("--scale must be in (0, 1]")
    if args.batch_size is not None and args.batch_size < 1:
        parser.error("--batch-size must be at least 1")

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fitness.settings")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ["DATABASE_TEST_NAME"] = f"bench_retention_{os.getpid()}"
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection
    from django.utils import timezone

    from messaging.retention import prune, prune_target

    names = ["processed-events", "telemetry", "dead-letters", "push-deliveries", "notifications"]
    rows = month_rows(args.scale, args.smoke)
    print(f"setting up: database {os.environ['DATABASE_TEST_NAME']}", file=sys.stderr)
    test_db = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
    try:
        targets = [prune_target(name) for name in names]
        end = timezone.now()
        start = end - timedelta(seconds=MONTH_SECONDS)
        insert_month(rows, start=start, end=end)
        before = table_sizes(targets)
        at_month_end = {t.name: prune(t, batch_size=args.batch_size, now=end) for t in targets}
        vacuum(targets, full=False)
        after = table_sizes(targets)
        vacuum(targets, full=True)
        compacted = table_sizes(targets)
        everything = {t.name: prune(t, batch_size=args.batch_size, now=end + timedelta(days=366)) for t in targets}
    finally:
        connection.close()
        connection.creation.destroy_test_db(test_db, verbosity=0)

    batch = args.batch_size or settings.RETENTION_BATCH_SIZE
    figures = {"assumptions": {
        "month_days": 30, "uploads_per_s": UPLOADS_PER_S, "confirmed_share": CONFIRMED_SHARE,
        "telemetry_per_s": READINGS_PER_S, "dead_letter_share": DEAD_LETTER_SHARE,
        "notifications_per_day": NOTIFICATIONS_PER_DAY, "processed_events_scale": args.scale,
        "smoke": args.smoke, "batch_size": batch,
    }, "tables": {}}
    header = (f"{'table':<17} {'kept':>5} {'rows before':>12} {'MB before':>10} {'rows after':>11} "
              f"{'MB after':>9} {'MB compact':>10} {'deleted':>10} {'rows/s':>8} {'all rows/s':>10} "
              f"{'full-month MB':>13}")
    print(header)
    print("-" * len(header))
    for target in targets:
        name = target.name
        scale = (args.scale if name == "processed-events" else 1.0) * (SMOKE_SHARE if args.smoke else 1.0)
        result, total = at_month_end[name], everything[name]
        row = {
            "retention_days": getattr(settings, target.retention_setting),
            "rows_before": before[name]["rows"], "mb_before": before[name]["mb"],
            "rows_after": after[name]["rows"], "mb_after": after[name]["mb"], "mb_compacted": compacted[name]["mb"],
            "deleted_at_month_end": result.deleted + result.children_deleted, "batches": result.batches,
            "rows_per_s_at_month_end": round(result.rows_per_second),
            "deleted_all": total.deleted + total.children_deleted,
            "rows_per_s_all": round(total.rows_per_second),
            "inserted_share_of_month": scale,
            "full_month_mb_before": round(before[name]["mb"] / scale, 1),
            "full_month_mb_kept": round(compacted[name]["mb"] / scale, 1),
        }
        figures["tables"][name] = row
        print(f"{name:<17} {row['retention_days']:>5} {row['rows_before']:>12,} {row['mb_before']:>10,.1f} "
              f"{row['rows_after']:>11,} {row['mb_after']:>9,.1f} {row['mb_compacted']:>10,.1f} "
              f"{row['deleted_at_month_end']:>10,} {row['rows_per_s_at_month_end']:>8,} "
              f"{row['rows_per_s_all']:>10,} "
              f"{row['full_month_mb_before']:>6,.0f}→{row['full_month_mb_kept']:<6,.0f}")
    print(f"\nbatches of {batch} rows; 'kept' in days; 'MB after' on disk after a plain VACUUM (space reused by new "
          "rows), 'MB compact' after VACUUM FULL; 'rows/s' the prune at month end, 'all rows/s' deleting every row; "
          "push-deliveries 'all' includes nothing left for notifications' own children. "
          f"ProcessedEvent inserted at {args.scale:g} of a month; full-month MB = before → kept, extrapolated.")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
