"""Who may do what in RabbitMQ: one user per process type, each with rights on its own resources.

    for user in BROKER_USERS:
        print(user.name, user.configure, user.write, user.read, user.tags)

RabbitMQ grants three rights per user and vhost, each a regular expression matched against
the names of exchanges and queues (https://www.rabbitmq.com/docs/access-control):
*configure* declares and deletes them, *write* publishes to an exchange and binds a queue
(write on the queue, read on the exchange), *read* consumes or gets from a queue. A passive
declare (the queue depths of GET /metrics, `dlq`'s counts) needs none of them. `^$` matches
nothing (but the default exchange, which no process of ours publishes to).

`manage.py setup_broker` is the only process that declares the topology (fitness/topology.py):
the web, the relay, beat and the workers publish and consume with `no_declare` queues, so
none of them needs configure on a queue or exchange of the topology, and none can delete
one. What each process does with RabbitMQ, and so its rights:

* setup-broker (a Job): declares every exchange, queue and binding of the topology, and
  recreates an outdated `.dlq` on request. Configure, write and read on those names only.
* web: reads queue depths from the management API (tag `management`: it sees the queues of
  the vhosts it has rights in, no more) and publishes to fitness.events for the admin's
  dead-letter replay (events themselves reach RabbitMQ only through the relay). Read on the `.dlq`s only: the
  admin's "Replay selected" and `manage.py dlq replay|purge` take dead letters from them.
  It cannot consume a work queue or declare anything.
* relay and beat: publish to fitness.events, nothing else.
* each worker pool: consumes its own work queues, publishes retries (the celery_delayed_27
  exchange that Celery's native delayed delivery enters at) and, kept for now though only the
  relay publishes events, fitness.events; and
  takes part in Celery's remote control and events, which Flower uses: the pidbox queue of
  its node (`<name>@<host>.celery.pidbox`, declared by the worker), the `celery.pidbox`,
  `reply.celery.pidbox` and `celeryev` exchanges. It cannot read another pool's queue.
* dead-letters (the archiver): consumes dead-letters.archive; publishes events (a consumer's
  dead-letter hook may publish one).
* flower: Celery's events (its own `celeryev.*` queue), remote control (its reply queues),
  and the management API's queue list (tag `management`). No work queue at all.
* keda: the management API's queue depths only (tag `management`, no AMQP rights).

`manage.py broker_users` prints this table as rabbitmqctl commands or as the Messaging
Topology Operator's User and Permission resources (deploy/kubernetes/rabbitmq-users.yaml,
which tests/deploy/test_kubernetes.py checks against it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from fitness import topology

NOTHING = "^$"
# Celery's remote control (pidbox) and events: the exchanges, a worker node's own mailbox queue
# (`<name>@<host>.celery.pidbox`), Flower's reply queues (`<uuid>.reply.celery.pidbox`) and
# event queues (`celeryev.<uuid>`).
PIDBOX_EXCHANGE = "celery.pidbox"
REPLY_EXCHANGE = "reply.celery.pidbox"
EVENTS_EXCHANGE = "celeryev"
NODE_MAILBOX = r".+@.+\.celery\.pidbox"
REPLY_QUEUE = r"[^@]+\.reply\.celery\.pidbox"
EVENT_QUEUE = r"celeryev\..+"
# Celery's native delayed delivery: a retry with a countdown is published to the top level,
# from where RabbitMQ moves it down the celery_delayed_* queues to the work queue.
DELAYED_ENTRY_EXCHANGE = "celery_delayed_27"
DELAYED_LEVELS = r"celery_delayed_(\d+|delivery)"


def literal(name: str) -> str:
    """A resource name as a regular expression matching only itself."""
    if not re.fullmatch(r"[A-Za-z0-9_.\-]+", name):
        raise ValueError(f"not a plain resource name: {name!r}")
    return name.replace(".", r"\.")


def exactly(*patterns: str) -> str:
    """A regular expression matching whole names only: each of `patterns` (regexes) or none."""
    if not patterns:
        return NOTHING
    return "^(" + "|".join(patterns) + ")$"


def names(*resources: str) -> list[str]:
    return [literal(name) for name in resources]


@dataclass(frozen=True)
class BrokerUser:
    process: str  # the Procfile process, Kubernetes Job or outside client that connects as this user
    purpose: str
    configure: str = NOTHING
    write: str = NOTHING
    read: str = NOTHING
    tags: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The RabbitMQ user name (and, in Kubernetes, the Secret `fitness-rabbitmq-<process>`)."""
        return f"fitness-{self.process}"

    @property
    def secret_name(self) -> str:
        return f"fitness-rabbitmq-{self.process}"

    def permissions(self) -> dict[str, str]:
        return {"configure": self.configure, "write": self.write, "read": self.read}


def _topology_resources() -> list[str]:
    exchanges = [topology.EVENTS_EXCHANGE.name, topology.DEAD_LETTER_EXCHANGE.name]
    queues = topology.queue_names() + topology.dead_letter_queue_names() + [topology.DEAD_LETTER_ARCHIVE_QUEUE]
    return names(*exchanges, *queues) + [DELAYED_LEVELS]


def _worker(process: str, purpose: str) -> BrokerUser:
    return BrokerUser(
        process, purpose,
        configure=exactly(*names(PIDBOX_EXCHANGE, REPLY_EXCHANGE, EVENTS_EXCHANGE), NODE_MAILBOX),
        write=exactly(*names(topology.EVENTS_EXCHANGE.name, DELAYED_ENTRY_EXCHANGE, REPLY_EXCHANGE, EVENTS_EXCHANGE),
                      NODE_MAILBOX),
        read=exactly(*names(*topology.queues_for_process(process), PIDBOX_EXCHANGE), NODE_MAILBOX),
    )


def _users() -> tuple[BrokerUser, ...]:
    events = exactly(literal(topology.EVENTS_EXCHANGE.name))
    everything = exactly(*_topology_resources())
    workers = sorted({queue.process for queue in topology.WORK_QUEUES})
    celery_internals = exactly(*names(PIDBOX_EXCHANGE, REPLY_EXCHANGE, EVENTS_EXCHANGE), REPLY_QUEUE, EVENT_QUEUE)
    return (
        BrokerUser("setup-broker", "declares the topology (manage.py setup_broker)",
                   configure=everything, write=everything, read=everything),
        BrokerUser("web", "publishes events; the admin's dead-letter replay; queue depths (management API)",
                   write=events, read=exactly(*names(*topology.dead_letter_queue_names())), tags=("management",)),
        BrokerUser("relay", "publishes the outbox's events", write=events),
        BrokerUser("beat", "publishes the scheduled jobs", write=events),
        *(_worker(process, "consumes " + ", ".join(topology.queues_for_process(process)) + "; publishes retries")
          for process in workers),
        BrokerUser(topology.DEAD_LETTER_ARCHIVE_PROCESS, f"consumes {topology.DEAD_LETTER_ARCHIVE_QUEUE}",
                   write=events, read=exactly(literal(topology.DEAD_LETTER_ARCHIVE_QUEUE))),
        BrokerUser("flower", "Celery's events and remote control; queue depths (management API)",
                   configure=celery_internals, write=celery_internals, read=celery_internals, tags=("management",)),
        BrokerUser("keda", "queue depths for autoscaling (management API only)", tags=("management",)),
    )


BROKER_USERS: tuple[BrokerUser, ...] = _users()


def broker_user(process: str) -> BrokerUser:
    for user in BROKER_USERS:
        if user.process == process:
            return user
    raise LookupError(f"no RabbitMQ user for {process!r}; known: {', '.join(u.process for u in BROKER_USERS)}")


def rabbitmqctl_commands(vhost: str = "/", *, password: str = "<password>") -> list[str]:
    """The rabbitmqctl commands that create every user (passwords to be filled in) with its rights."""
    import shlex

    lines = []
    for user in BROKER_USERS:
        lines.append(f"rabbitmqctl add_user {user.name} {shlex.quote(password)}")
        lines.append(f"rabbitmqctl set_user_tags {user.name} {' '.join(user.tags)}".rstrip())
        lines.append(f"rabbitmqctl set_permissions -p {shlex.quote(vhost)} {user.name} "
                     f"{shlex.quote(user.configure)} {shlex.quote(user.write)} {shlex.quote(user.read)}")
    return lines


CLUSTER = "fitness-rabbitmq"


def kubernetes_resources(vhost: str = "/", *, cluster: str = CLUSTER) -> list[dict]:
    """A User and a Permission (RabbitMQ Messaging Topology Operator) per user.

    Each User imports its credentials from the Secret `fitness-rabbitmq-<process>` (keys
    `username`, `password`; placeholders in deploy/kubernetes/secrets.yaml), which is also the
    only RabbitMQ secret that process's pods mount.
    """
    resources: list[dict] = []
    for user in BROKER_USERS:
        resources.append({
            "apiVersion": "rabbitmq.com/v1beta1",
            "kind": "User",
            "metadata": {"name": user.name},
            "spec": {
                "tags": list(user.tags),
                "rabbitmqClusterReference": {"name": cluster},
                "importCredentialsSecret": {"name": user.secret_name},
            },
        })
        resources.append({
            "apiVersion": "rabbitmq.com/v1beta1",
            "kind": "Permission",
            "metadata": {"name": user.name},
            "spec": {
                "vhost": vhost,
                "userReference": {"name": user.name},
                "permissions": user.permissions(),
                "rabbitmqClusterReference": {"name": cluster},
            },
        })
    return resources
