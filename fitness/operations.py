"""The operators' overview page in the admin (superusers only): /admin/operations/.

One page that answers "is the backbone healthy?": whether RabbitMQ is reachable, each work
queue with its ready and unacknowledged messages, consumers and dead-letter queue, the outbox
backlog and the rows RabbitMQ refused (with their errors), the dead letters still waiting for
an operator, and the active model version — each linking to the
admin view where the operator acts (replay, promote, roll back). Dead-letter queues do not
show in Flower's broker tab, so this page and /metrics are where they are watched.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.apps import apps
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Count
from django.template.response import TemplateResponse

from fitness import topology
from messaging.broker_status import broker_status
from messaging.models import DeadLetter, OutboxMessage
from messaging.outbox import outbox_backlog
from observability.queue_stats import SOURCE_PASSIVE, QueueDepth, QueueStatsError, queue_depths

logger = logging.getLogger(__name__)

FAILING_ROWS_SHOWN = 20


@dataclass(frozen=True)
class QueueRow:
    queue: topology.WorkQueue
    depth: QueueDepth | None
    dead_letters: QueueDepth | None
    waiting_dead_letters: int  # dead letters recorded in PostgreSQL and not yet replayed or purged


def operations_view(request):
    if not (request.user.is_active and request.user.is_superuser):
        raise PermissionDenied
    broker_error = ""
    try:
        depths = {depth.name: depth for depth in queue_depths()}
    except QueueStatsError as exc:  # the page still shows the outbox and the models when RabbitMQ is down
        logger.warning("queue depths unavailable: %s", exc)
        depths, broker_error = {}, f"{exc.__class__.__name__}: {exc}"
    waiting = dict(
        DeadLetter.objects.still_dead_lettered()
        .values_list("queue").annotate(count=Count("id")).values_list("queue", "count")
    )
    rows = [
        QueueRow(queue, depths.get(queue.name), depths.get(queue.dead_letter_queue_name), waiting.get(queue.name, 0))
        for queue in topology.WORK_QUEUES
    ]
    unpublished, oldest_age = outbox_backlog()
    failing = OutboxMessage.objects.failing().order_by("pk")
    # by name, like the URLconf's includes: the web side imports nothing of the consumers' packages
    ModelVersion = apps.get_model("ml", "ModelVersion")
    context = {
        **admin.site.each_context(request),
        "title": "Operations",
        "rows": rows,
        "archive": depths.get(topology.DEAD_LETTER_ARCHIVE_QUEUE),
        "passive": [depth.name for depth in depths.values() if depth.source == SOURCE_PASSIVE],
        "broker_error": broker_error,
        "broker": broker_status(),
        "outbox_unpublished": unpublished,
        "outbox_oldest_age": oldest_age,
        "outbox_failing": list(failing[:FAILING_ROWS_SHOWN]),
        "outbox_failing_count": failing.count(),
        "active_version": ModelVersion.objects.filter(is_active=True).first(),
        "latest_version": ModelVersion.objects.order_by("-created_at").first(),
    }
    return TemplateResponse(request, "admin/operations.html", context)
