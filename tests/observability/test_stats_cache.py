"""A flood of /metrics scrapes costs one read of the expensive figures (observability/stats_cache.py).

The management API calls are counted where they arrive: a local HTTP proxy in front of the real
RabbitMQ management API (RABBITMQ_MANAGEMENT_URL points at it) counts and forwards every request,
so the figures are the broker's own. The outbox's reads are counted in Django's own query log.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from messaging.outbox import outbox_backlog, outbox_refused_count
from observability.queue_stats import QueueStatsError, queue_depths
from tests.observability.scrape import closed_port, scrape

pytestmark = pytest.mark.django_db
MANAGEMENT = "http://127.0.0.1:15672"
SCRAPES = 20


class CountingProxy:
    """Forwards GET requests to the real management API and counts them by path."""

    def __init__(self):
        self.requests: list[str] = []
        self.statuses: list[int] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                proxy.requests.append(self.path)
                upstream = urllib.request.Request(MANAGEMENT + self.path, headers={
                    "Authorization": self.headers["Authorization"], "Accept": "application/json"})
                opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
                with opener.open(upstream, timeout=10) as response:
                    proxy.statuses.append(response.status)  # the real API's answer, forwarded
                    body = response.read()
                    self.send_response(response.status)
                    self.send_header("Content-Type", response.headers["Content-Type"])
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://guest:guest@127.0.0.1:{self.server.server_port}"

    def queue_listings(self) -> int:
        return sum(1 for path in self.requests if path.startswith("/api/queues/"))

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def proxy():
    counting = CountingProxy()
    yield counting
    counting.close()


@pytest.fixture(autouse=True)
def fresh_caches():
    for cached in (queue_depths, outbox_backlog, outbox_refused_count):
        cached.cache_clear()
    yield
    for cached in (queue_depths, outbox_backlog, outbox_refused_count):
        cached.cache_clear()


def outbox_queries(queries) -> int:
    return sum(1 for query in queries if "messaging_outboxmessage" in query["sql"])


def test_without_the_cache_every_scrape_calls_the_management_api(proxy):
    with override_settings(RABBITMQ_MANAGEMENT_URL=proxy.url, STATS_CACHE_SECONDS=0):
        for _ in range(3):
            scrape()
    assert proxy.queue_listings() == 3


def test_a_flood_of_scrapes_costs_one_management_api_call_and_one_outbox_read(proxy):
    with override_settings(RABBITMQ_MANAGEMENT_URL=proxy.url, STATS_CACHE_SECONDS=30):
        with CaptureQueriesContext(connection) as first:
            found = scrape()
        # read (a queue declared moments ago may have no management figures yet: passive declares fill in)
        assert found.value("fitness_queue_stats_up") == 1
        assert found.value("fitness_outbox_stats_up") == 1
        with CaptureQueriesContext(connection) as rest:
            scrapes = [scrape() for _ in range(SCRAPES - 1)]
    assert proxy.queue_listings() == 1 and proxy.statuses == [200]
    assert outbox_queries(first.captured_queries) >= 2 and outbox_queries(rest.captured_queries) == 0
    assert all(s.value("fitness_queue_messages_ready", queue="task.submitted", kind="work") is not None
               for s in scrapes)


def test_after_the_period_the_next_scrape_reads_again(proxy):
    with override_settings(RABBITMQ_MANAGEMENT_URL=proxy.url, STATS_CACHE_SECONDS=0.5):
        scrape()
        scrape()
        assert proxy.queue_listings() == 1
        time.sleep(0.6)
        scrape()
    assert proxy.queue_listings() == 2


def test_concurrent_readers_wait_for_the_one_read_in_progress(proxy):
    with override_settings(RABBITMQ_MANAGEMENT_URL=proxy.url, STATS_CACHE_SECONDS=30):
        results = []
        threads = [threading.Thread(target=lambda: results.append(queue_depths())) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
    assert len(results) == 8 and all(r == results[0] for r in results)
    assert proxy.queue_listings() == 1


def test_a_management_api_that_hangs_costs_one_attempt_per_period_not_one_per_scrape(broker_url):
    # a port that accepts connections and never answers: each read waits QUEUE_STATS_TIMEOUT_SECONDS
    silent = socket.create_server(("127.0.0.1", 0))
    silent.listen(16)
    accepted = []
    threading.Thread(target=lambda: [accepted.append(silent.accept()) for _ in iter(int, 1)], daemon=True).start()
    broker_url(f"amqp://guest:guest@127.0.0.1:{closed_port()}//")  # and no AMQP to fall back on
    try:
        with override_settings(RABBITMQ_MANAGEMENT_URL=f"http://guest:guest@127.0.0.1:{silent.getsockname()[1]}",
                               STATS_CACHE_SECONDS=30, QUEUE_STATS_TIMEOUT_SECONDS=0.5):
            for _ in range(5):
                with pytest.raises(QueueStatsError):
                    queue_depths()
            assert scrape().value("fitness_queue_stats_up") == 0
        assert len(accepted) == 1
    finally:
        silent.close()
