"""`python -m observability.flower [Flower's options]`: Flower, listing every queue of the topology.

The Procfile's `flower` process and the Kubernetes Deployment run this instead of
`celery -A fitness flower`: the same Flower 2.2 (its command-line options, its `FLOWER_*`
variables, its config file, basic auth), started the way Flower's own command starts it, with
two differences:

* Its broker tab and `GET /api/queues/length` list every queue of `fitness/topology.py` (the
  work queues, their `.dlq` and the dead-letter archive), plus any other queue a worker
  consumes. Flower alone takes these names only from its cache of the workers'
  `active_queues` replies, which it fills with one inspect broadcast when it starts (1 s
  timeout) and refreshes only when somebody opens a worker's page or asks
  `/api/workers?refresh=1`. Under `make run` honcho starts Flower together with the workers:
  the pools that were not consuming yet when Flower asked (Django and, in the AI pool, torch
  take seconds to load) were missing from the broker tab, for as long as nobody refreshed.
  So were, and would be, the queues of a pool scaled to zero or told to stop consuming,
  whose backlog is then what an operator needs to see.
* `--broker_api` (Flower's own variable: FLOWER_BROKER_API) defaults to the management API
  that GET /metrics reads queue depths from: RABBITMQ_MANAGEMENT_URL, else the first broker
  host of CELERY_BROKER_URL on port 15672 with its credentials, ending in `/api/`. Flower asks
  it about the vhost of CELERY_BROKER_URL.

Without basic auth (`--basic-auth=user:password` or FLOWER_BASIC_AUTH) or Flower's OAuth
(`--auth`) it refuses to start: Flower's pages can revoke tasks and stop workers.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys

from flower import command as flower_command
from flower.api.tasks import GetQueueLengths
from flower.app import Flower, rewrite_handler
from flower.urls import settings as flower_settings
from flower.views.broker import BrokerView
from tornado.options import options


def topology_queue_names() -> list[str]:
    from observability.queue_stats import topology_queues

    return [name for name, _ in topology_queues()]


class _TopologyQueues:
    """The queue names of a Flower page: the topology's and those the workers reported."""

    def get_active_queue_names(self) -> list[str]:
        return sorted(set(super().get_active_queue_names()) | set(topology_queue_names()))


class BrokerTab(_TopologyQueues, BrokerView):
    """GET /broker"""


class QueueLengths(_TopologyQueues, GetQueueLengths):
    """GET /api/queues/length"""


class TopologyFlower(Flower):
    """Flower whose broker tab and queue lengths cover every queue of the topology."""

    def __init__(self, options=None, **kwargs):
        super().__init__(options=options, **kwargs)
        handlers = [(r"/broker", BrokerTab), (r"/api/queues/length", QueueLengths)]
        if self.options.url_prefix:
            handlers = [rewrite_handler(handler, self.options.url_prefix) for handler in handlers]
        # Rules added later are matched before Flower's own, which keep serving every other path.
        self.add_handlers(r".*", handlers)


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "fitness.settings")
    import django

    django.setup()
    from fitness.celery import app
    from observability.queue_stats import flower_broker_api

    argv = sys.argv[1:] if argv is None else argv
    # What Flower's `celery flower` command does, in its order, with TopologyFlower.
    flower_command.apply_env_options()
    flower_command.apply_options("flower", argv)
    if not options.basic_auth and not options.auth:
        sys.exit("flower: no authentication: set FLOWER_BASIC_AUTH=user:password (or pass --basic-auth)")
    if not options.broker_api:
        options.broker_api = flower_broker_api()
    flower_command.extract_settings()
    flower_command.setup_logging()

    flower = TopologyFlower(capp=app, options=options, **flower_settings)
    atexit.register(flower.stop)
    signal.signal(signal.SIGTERM, flower_command.sigterm_handler)
    port = flower.start_http_server()
    flower_command.print_banner(app, "ssl_options" in flower_settings, port)
    try:
        flower.start()
    except (KeyboardInterrupt, SystemExit):
        pass


if __name__ == "__main__":
    main()
