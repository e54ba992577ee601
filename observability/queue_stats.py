"""How many messages wait in every queue of the topology (`fitness/topology.py`).

    for depth in queue_depths():
        print(depth.name, depth.kind, depth.ready, depth.unacked, depth.consumers, depth.source)

The source is RabbitMQ's management API (`GET /api/queues/<vhost>` on port 15672, the
`rabbitmq_management` plugin that `make setup` enables): ready, unacknowledged and consumer
counts of the broker URL's vhost in one request. Its figures lag by up to the broker's
`collect_statistics_interval` (5 s by default), and a queue declared moments ago has none
yet. When the API does not answer (plugin off, wrong credentials, timeout), or has no
figures for a queue, a passive `queue.declare` over AMQP gives that queue's ready and
consumer counts (at once, but without unacked messages: `unacked` is then None). A passive
declare never creates a queue.

Used by `GET /metrics` (the `fitness_queue_*` gauges) and the operators' admin page.
"""

from __future__ import annotations

import base64
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass

from django.conf import settings
from kombu import Connection

from fitness import topology
from observability.stats_cache import cached_for_stats

logger = logging.getLogger(__name__)

MANAGEMENT_PORT = 15672
KIND_WORK = "work"
KIND_DEAD_LETTER = "dead-letter"
KIND_ARCHIVE = "archive"
SOURCE_MANAGEMENT = "management"
SOURCE_PASSIVE = "passive"


@dataclass(frozen=True)
class QueueDepth:
    name: str
    kind: str  # "work", "dead-letter" or "archive"
    ready: int
    unacked: int | None  # None when only passive declares were possible
    consumers: int
    source: str  # "management" or "passive"


class QueueStatsError(Exception):
    """Queue depths cannot be had; the message says why."""


class BrokerUnreachable(QueueStatsError):
    """Neither the management API nor RabbitMQ itself (AMQP) answered."""


class QueueNotDeclared(QueueStatsError):
    """A queue of the topology does not exist in the broker's vhost."""


def topology_queues() -> list[tuple[str, str]]:
    """(name, kind) of every queue, in the order `declare_topology` declares them."""
    queues: list[tuple[str, str]] = []
    for queue in topology.WORK_QUEUES:
        queues.append((queue.name, KIND_WORK))
        queues.append((queue.dead_letter_queue_name, KIND_DEAD_LETTER))
    queues.append((topology.DEAD_LETTER_ARCHIVE_QUEUE, KIND_ARCHIVE))
    return queues


@cached_for_stats
def queue_depths() -> list[QueueDepth]:
    """The depth of every queue of the topology, in topology order.

    Read at most once per STATS_CACHE_SECONDS in a process (observability.stats_cache): a flood
    of /metrics scrapes costs one management API call. Raises BrokerUnreachable when neither
    the management API nor AMQP answers, and QueueNotDeclared when a queue is missing
    (`manage.py setup_broker` has not run).
    """
    queues = topology_queues()
    try:
        stats = _management_stats()
    except QueueStatsError as exc:
        _note_management(available=False, reason=str(exc))
        stats = {}
    else:
        _note_management(available=True)
    missing = [name for name, _ in queues if name not in stats]
    if missing:
        stats.update(_passive_stats(missing))
    return [QueueDepth(name=name, kind=kind, **stats[name]) for name, kind in queues]


# --- the management API -------------------------------------------------------------


def _broker_connection(timeout: float) -> Connection:
    # The first broker of CELERY_BROKER_URL ("url1;url2" lists failover nodes).
    return Connection(settings.CELERY_BROKER_URL, connect_timeout=timeout)


def broker_vhost() -> str:
    return _broker_connection(1.0).virtual_host or "/"


def management_base_url() -> str:
    """The management API's root (`http://user:password@host:15672`), without `/api`.

    RABBITMQ_MANAGEMENT_URL when set (credentials in it optional), else the first broker's
    host on port 15672 with the broker's credentials.
    """
    configured = (settings.RABBITMQ_MANAGEMENT_URL or "").strip()
    connection = _broker_connection(1.0)
    user = urllib.parse.quote(connection.userid or "guest", safe="")
    password = urllib.parse.quote(connection.password or "guest", safe="")
    if not configured:
        host = connection.hostname or "localhost"
        host = f"[{host}]" if ":" in host else host
        return f"http://{user}:{password}@{host}:{MANAGEMENT_PORT}"
    url = configured.rstrip("/")
    if url.endswith("/api"):
        url = url[: -len("/api")]
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise QueueStatsError(
            f"RABBITMQ_MANAGEMENT_URL must be http(s)://[user:password@]host[:port], got {configured!r}"
        )
    if parts.username is None:
        url = urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.netloc}"))
    return url


def flower_broker_api() -> str:
    """The `--broker_api` URL Flower expects: the management API's root ending in `/api/`."""
    return management_base_url() + "/api/"


def _management_stats() -> dict[str, dict]:
    base = urllib.parse.urlsplit(management_base_url())
    vhost = urllib.parse.quote(broker_vhost(), safe="")
    netloc = base.netloc.rsplit("@", 1)[-1]  # the credentials go in a header
    url = urllib.parse.urlunsplit(
        (base.scheme, netloc, f"{base.path}/api/queues/{vhost}",
         "columns=name,messages_ready,messages_unacknowledged,consumers", "")
    )
    credentials = f"{urllib.parse.unquote(base.username or '')}:{urllib.parse.unquote(base.password or '')}"
    request = urllib.request.Request(url, headers={
        "Authorization": "Basic " + base64.b64encode(credentials.encode()).decode(),
        "Accept": "application/json",
    })
    # The standard library is enough for one authenticated GET with a timeout; straight to
    # the broker, never through an HTTP proxy of the environment.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=settings.QUEUE_STATS_TIMEOUT_SECONDS) as response:
            listing = json.load(response)
    except urllib.error.HTTPError as exc:
        raise QueueStatsError(f"the RabbitMQ management API at {url} answered {exc.code} {exc.reason}") from exc
    except (OSError, ValueError) as exc:  # refused, timed out, not JSON
        raise QueueStatsError(f"the RabbitMQ management API at {url} did not answer: {exc}") from exc
    stats = {}
    for queue in listing if isinstance(listing, list) else []:
        # A queue's figures appear only after the broker's first statistics round.
        if "messages_ready" not in queue or "messages_unacknowledged" not in queue:
            continue
        stats[queue["name"]] = {
            "ready": int(queue["messages_ready"]),
            "unacked": int(queue["messages_unacknowledged"]),
            "consumers": int(queue.get("consumers") or 0),
            "source": SOURCE_MANAGEMENT,
        }
    return stats


_management_was_available: bool | None = None


def _note_management(*, available: bool, reason: str = "") -> None:
    # Say it once when the management API goes away or comes back, not at every scrape.
    global _management_was_available
    if available != _management_was_available:
        if available:
            logger.info("queue depths come from the RabbitMQ management API")
        else:
            logger.warning("queue depths fall back to passive declares (no unacked counts): %s", reason)
    _management_was_available = available


# --- passive declares ---------------------------------------------------------------


def _passive_stats(names: list[str]) -> dict[str, dict]:
    from amqp.exceptions import NotFound

    from messaging.broker import connect_once

    stats = {}
    connection = _broker_connection(settings.QUEUE_STATS_TIMEOUT_SECONDS)
    try:
        try:
            connect_once(connection)
        except Exception as exc:
            raise BrokerUnreachable(
                f"RabbitMQ at {connection.as_uri()} did not answer, nor did its management API: {exc}"
            ) from exc
        channel = connection.channel()
        for name in names:
            try:
                _, ready, consumers = channel.queue_declare(queue=name, passive=True)
            except NotFound as exc:  # the channel is closed by the broker; the answer is clear
                raise QueueNotDeclared(
                    f"the queue {name} does not exist in the vhost {connection.virtual_host!r}"
                    " (has `manage.py setup_broker` run?)"
                ) from exc
            stats[name] = {"ready": ready, "unacked": None, "consumers": consumers, "source": SOURCE_PASSIVE}
    finally:
        connection.release()
    return stats
