"""Settings for the test suite: the product's settings plus the probe app.

Every run gets its own PostgreSQL database and its own RabbitMQ virtual host, named
after FITNESS_TEST_RUN, which subprocesses (workers, relays) inherit from the
environment, so `make run` and the suite never see each other's rows or messages.
"""

import os
import uuid

from observability.multiprocess import configure_multiprocess_dir

os.environ.setdefault("FITNESS_TEST_RUN", uuid.uuid4().hex[:10])
TEST_RUN = os.environ["FITNESS_TEST_RUN"]
TEST_VHOST = f"fitness-test-{TEST_RUN}"
BROKER_ROOT_URL = os.environ.get("TEST_BROKER_ROOT_URL", "amqp://guest:guest@127.0.0.1:5672")
os.environ.setdefault("CELERY_BROKER_URL", f"{BROKER_ROOT_URL}/{TEST_VHOST}")
os.environ.setdefault("DATABASE_TEST_NAME", f"test_fitness_{TEST_RUN}")
# This run's metric files (never `make run`'s var/metrics); its workers inherit the variable.
# Made here: a worker's project package may have chosen var/metrics before this file ran.
os.environ["PROMETHEUS_MULTIPROC_DIR"] = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "var", f"test-metrics-{TEST_RUN}"
)
configure_multiprocess_dir()

from fitness.settings import *  # noqa: E402,F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.probe"]  # noqa: F405
MEDIA_ROOT = BASE_DIR / "var" / f"test-media-{TEST_RUN}"  # noqa: F405
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast test users
# In-process tests render pages without a collectstatic: plain static file names. The web
# processes that tests start (tests.support.WebProcess: gunicorn as the Procfile runs it)
# keep the product's storage (WhiteNoise's hashed, compressed files) on a collectstatic of
# this run's own (TEST_STATIC_STORAGE=production, STATIC_ROOT).
if os.environ.get("TEST_STATIC_STORAGE") != "production":
    STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}  # noqa: F405
STATIC_ROOT = os.environ.get("STATIC_ROOT") or str(BASE_DIR / "var" / f"test-static-{TEST_RUN}")  # noqa: F405
os.makedirs(STATIC_ROOT, exist_ok=True)  # WhiteNoise warns about a missing one in every in-process test
# The shared broker of this machine sometimes takes seconds to open a connection when many
# test runs churn vhosts; a report of "unreachable" there would be a false one. Tests of a
# down or hung broker set their own short timeout.
BROKER_CHECK_TIMEOUT_SECONDS = 10.0
# Tests look at the queues and the outbox right after they change them: no cache of those reads
# (tests/observability/test_stats_cache.py turns it on to show what it saves).
STATS_CACHE_SECONDS = 0.0
