"""Settings for the laundry-branch network.

Everything that differs between a laptop, CI and production comes from environment
variables; the defaults are the local development services (PostgreSQL and RabbitMQ on
127.0.0.1, as `make run` and `make test` set them up). Each default is written here once:
code reads `settings.X`, never `getattr(settings, "X", default)` (tests/fitness/test_settings_defaults.py).
"""

import os
import sys
from datetime import timedelta
from pathlib import Path

import dj_database_url

from fitness.logging import log_format

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def env_float(name: str, default: float) -> float:
    return float(os.environ.get(name, default))


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


def refuse_to_start(problem: str):
    """A setting the process cannot run with: one line on stderr, exit 1 (a traceback would bury it)."""
    print(f"refusing to start: {problem}", file=sys.stderr)
    raise SystemExit(1)


# --- Development or production -------------------------------------------------------------
# DJANGO_ENV=production (the image and deploy/kubernetes/ set it) refuses to start without a
# secret key and allowed hosts from the environment, and turns on what a site behind a TLS
# ingress needs (below, "Behind the TLS ingress"); `manage.py check --deploy` then prints no
# warning. The default, development, runs on a laptop with the public key below.
DJANGO_ENV = env("DJANGO_ENV", "development").strip().lower()
if DJANGO_ENV not in ("development", "production"):
    refuse_to_start(f"DJANGO_ENV must be development or production, not {DJANGO_ENV!r}")
PRODUCTION = DJANGO_ENV == "production"
# Public (it is in the repository): `check --deploy` flags it (security.W009), production refuses it.
DEVELOPMENT_SECRET_KEY = "django-insecure-local-development-key-it-is-public-never-use-it-in-production"
DEBUG = env_bool("DJANGO_DEBUG", False)
if PRODUCTION:
    SECRET_KEY = env("DJANGO_SECRET_KEY", "").strip()
    if not SECRET_KEY:
        refuse_to_start("DJANGO_ENV=production needs DJANGO_SECRET_KEY in the environment "
                        "(50 or more random characters); none is set")
    if SECRET_KEY.startswith("django-insecure-") or len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5:
        refuse_to_start("DJANGO_ENV=production needs a DJANGO_SECRET_KEY of 50 or more random characters "
                        "(not the development key, not a placeholder); the one set is refused")
    ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "")
    if not ALLOWED_HOSTS:
        refuse_to_start("DJANGO_ENV=production needs DJANGO_ALLOWED_HOSTS in the environment "
                        "(the site's host names, comma-separated); none is set")
    if DEBUG:
        refuse_to_start("DJANGO_ENV=production refuses DJANGO_DEBUG: it shows settings and code to anyone")
else:
    SECRET_KEY = env("DJANGO_SECRET_KEY", DEVELOPMENT_SECRET_KEY)
    ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1,[::1]")

# --- Behind the TLS ingress (production) ------------------------------------------------------
# The ingress terminates TLS and says so in X-Forwarded-Proto (it sets the header, a client's own
# never reaches the web): request.is_secure() is then true, so the API builds https:// URLs and
# the admin's POSTs pass Django's origin check. Plain http is redirected to https, except the
# probes and the scrape, which kubelet and Prometheus make over http to the pod's IP.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if PRODUCTION else None
SECURE_SSL_REDIRECT = PRODUCTION
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$", r"^metrics$"]  # fitness.health.PROBE_AND_SCRAPE_PATHS
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = PRODUCTION
# HSTS: browsers use https only, for a year, subdomains included, and may preload the domain
# (submitting it to the browsers' preload list is a separate, deliberate step).
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 365 * 24 * 3600) if PRODUCTION else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
# Origins (scheme://host) whose POSTs the admin accepts besides its own, e.g. https://admin.example.com
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",  # only until the tokens of before knox are gone (accounts/migrations)
    "knox",
    "accounts",  # after rest_framework.authtoken: its admin unregisters that one's
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI and ReDoc as our own static files (no CDN)
    "messaging",
    "branches",
    "tasks",
    "ml",
    "monitoring",
    "notifications",
    "audit",  # the audit trail: a subscriber of every event, and the operator's timelines
    "observability",
    "django_celery_beat",  # beat's schedule lives in PostgreSQL (beat runs its DatabaseScheduler)
    "axes",  # the admin login locks out after AXES_FAILURE_LIMIT failures (fitness/throttling.py)
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # /static/ from STATIC_ROOT (collectstatic), before anything else does work for a request
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "messaging.middleware.CorrelationIdMiddleware",
    # 411/413 (JSON) for a body without Content-Length or over DATA_UPLOAD_MAX_MEMORY_SIZE, unread
    "fitness.request_limits.RequestBodyLimitMiddleware",
    "fitness.health.AnyHostForProbesMiddleware",  # probes and scrapes address pods by IP
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "axes.middleware.AxesMiddleware",  # last: turns axes' lockout into the 429 (fitness.throttling)
]

ROOT_URLCONF = "fitness.urls"
WSGI_APPLICATION = "fitness.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "fitness" / "templates"],  # project-wide admin pages (the operations page)
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- PostgreSQL ----------------------------------------------------------------------
DATABASES = {
    "default": dj_database_url.parse(
        env("DATABASE_URL", "postgres://fitness:fitness@127.0.0.1:5432/fitness"),
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
# Django's PostgreSQL backend with the health check above run only after a second idle
# (fitness/db/base.py: the trade-off): a SELECT 1 per request was a tenth of an upload.
DATABASES["default"]["ENGINE"] = "fitness.db"
# Each pytest run gets a database of its own (see tests/conftest.py), so a running
# `make run` and the suite never touch each other's rows.
DATABASES["default"]["TEST"] = {"NAME": env("DATABASE_TEST_NAME", f"test_{DATABASES['default']['NAME']}")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Static files (the admin's, Swagger UI's and ReDoc's) are served by the web process itself
# (WhiteNoise): `collectstatic` (make setup, the image's build) writes them to STATIC_ROOT
# with content-hashed names and gzip copies; pages link the hashed names, which are cached
# for ten years ("immutable", WhiteNoise's max-age=315360000). Only STATIC_ROOT is served:
# photos (MEDIA_ROOT) never are, they go through the admin's checked photo view.
STATIC_URL = "static/"
STATIC_ROOT = Path(env("STATIC_ROOT", str(BASE_DIR / "var" / "static")))
MEDIA_URL = "media/"
MEDIA_ROOT = Path(env("MEDIA_ROOT", str(BASE_DIR / "var" / "media")))

# Photos go through Django's storage API: the file system by default, S3 (django-storages)
# when a bucket is configured; the AI workers read them the same way.
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}


def s3_storage(environ) -> dict | None:
    """The default storage on S3 (django-storages) when AWS_STORAGE_BUCKET_NAME is set; else None.

    The credentials are no setting here: boto3 finds them as usual (AWS_ACCESS_KEY_ID and
    AWS_SECRET_ACCESS_KEY, a web identity token in Kubernetes, an instance profile, ...).
    """
    if not environ.get("AWS_STORAGE_BUCKET_NAME"):
        return None
    addressing_style = environ.get("AWS_S3_ADDRESSING_STYLE") or None
    if addressing_style not in (None, "auto", "path", "virtual"):
        raise ValueError(f"AWS_S3_ADDRESSING_STYLE must be auto, path or virtual, not {addressing_style!r}")
    return {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": environ["AWS_STORAGE_BUCKET_NAME"],
            # another S3-compatible service (MinIO, Ceph, a test server); unset: AWS's own endpoints
            "endpoint_url": environ.get("AWS_S3_ENDPOINT_URL") or None,
            "region_name": environ.get("AWS_S3_REGION_NAME") or None,
            # "path" for a service without a host name per bucket; unset: botocore decides
            "addressing_style": addressing_style,
            # a stored name is never reused: a fresh one per photo, models/v3.pt is never replaced,
            # and a training copy that exists already is shared (content-addressed, ml.training_data)
            "file_overwrite": False,
            # objects stay private (no ACL: the bucket's policy decides); photos reach people only
            # through the owner-checked admin view, and a storage URL, if one is made, is signed
            "default_acl": None,
            "querystring_auth": True,
        },
    }


STORAGES["default"] = s3_storage(os.environ) or STORAGES["default"]
PHOTO_MAX_BYTES = env_int("PHOTO_MAX_BYTES", 10 * 1000 * 1000)
PHOTO_MAX_PIXELS = env_int("PHOTO_MAX_PIXELS", 40 * 1000 * 1000)

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.TokenAuthentication",  # knox's hashed tokens, one query, no write
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 20,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # POST /api/v1/auth/token/: attempts per username and per client address (fitness/throttling.py)
    "DEFAULT_THROTTLE_RATES": {
        "login-username": env("LOGIN_THROTTLE_USERNAME_RATE", "20/min"),
        "login-address": env("LOGIN_THROTTLE_ADDRESS_RATE", "60/min"),
    },
    # The proxies in front of the web that append the client's address to X-Forwarded-For (the
    # ingress: 1 in deploy/kubernetes/config.yaml); 0: the header is not believed, REMOTE_ADDR is.
    "NUM_PROXIES": env_int("NUM_PROXIES", 0),
}
# The apps' API tokens (django-rest-knox, accounts/): stored as SHA-512 digests, each good for
# AUTH_TOKEN_TTL_HOURS from sign-in (30 days: a helper signs in about once a month; a stolen
# token is good for at most that long, and signing out everywhere ends it at once). The expiry
# is fixed: AUTO_REFRESH stays off, so authenticating a request never writes.
REST_KNOX = {
    "TOKEN_TTL": timedelta(hours=env_float("AUTH_TOKEN_TTL_HOURS", 30 * 24)),
    "AUTO_REFRESH": False,
    "AUTH_HEADER_PREFIX": "Token",  # what the mobile app has always sent
}
# Expired tokens are deleted by the retention prune this many days after they expired.
AUTH_TOKEN_RETENTION_DAYS = env_int("AUTH_TOKEN_RETENTION_DAYS", 7)

# --- Credential guessing (fitness/throttling.py) ------------------------------------------
# The throttles' counts live in Django's cache, shared by every worker and pod: PostgreSQL (the
# database cache; `manage.py createcachetable` creates its table: make setup, the migrate Job).
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": "fitness_cache",
        # culling forgets counts: only far beyond what the attempts of a minute leave behind
        "OPTIONS": {"MAX_ENTRIES": 100_000},
    }
}
# The admin login (django-axes): AXES_FAILURE_LIMIT failed logins of a username, or from an
# address, within AXES_COOLOFF_TIME lock that username or address out for AXES_COOLOFF_TIME (429
# with Retry-After); a successful login clears the count. The API's token endpoint is throttled by
# DRF instead (AXES_ONLY_ADMIN_SITE).
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 20)
AXES_COOLOFF_TIME = timedelta(minutes=env_float("AXES_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_ONLY_ADMIN_SITE = True
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "fitness.throttling.client_address"
AXES_LOCKOUT_CALLABLE = "fitness.throttling.admin_lockout_response"
AXES_DISABLE_ACCESS_LOG = True  # failures are what axes is for; no table of every successful login
AXES_VERBOSE = False  # no banner at every start; a lockout is logged by fitness.throttling

SPECTACULAR_SETTINGS = {
    "TITLE": "Laundry-branch network API",
    "DESCRIPTION": "The helpers' mobile app API: register laundry tasks with a photo, follow their AI reading.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    # /api/docs/ (Swagger UI) and /api/redoc/ load their scripts from our static files
    # (drf-spectacular-sidecar), never from a CDN; no page of ours reaches another host.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # validatorUrl: none, or Swagger UI shows a badge image from validator.swagger.io
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": "none"},
}

# --- Celery on RabbitMQ --------------------------------------------------------------
# The queues, exchanges and dead-letter routes are declared in fitness/topology.py; the
# settings below are the reliability defaults every task inherits.
CELERY_BROKER_URL = env("CELERY_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
CELERY_BROKER_CONNECTION_TIMEOUT = env_float("CELERY_BROKER_CONNECTION_TIMEOUT", 4.0)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Publisher confirms: a publish returns only once RabbitMQ has the message (quorum
# queues store it on a majority of nodes before confirming).
CELERY_BROKER_TRANSPORT_OPTIONS = {"confirm_publish": True}
CELERY_BROKER_HEARTBEAT = 30
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
# Late acks: a message is acknowledged after its handler finished, so a worker that dies
# mid-task leaves it in the queue; a lost worker process means the message is redelivered
# (the quorum queue's delivery limit stops a poison message from looping forever).
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# A task that finally fails is rejected, not acked, so RabbitMQ dead-letters it.
CELERY_TASK_ACKS_ON_FAILURE_OR_TIMEOUT = False
# Prefetch one message per worker process: slow AI work is never hoarded by one process.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 120)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 150)
CELERY_WORKER_SEND_TASK_EVENTS = True  # Flower sees tasks without `-E`
# Celery's Django fixup closes a task's database connection before and after every task unless
# this is set (then every this many tasks): a new PostgreSQL connection per message. Workers
# keep theirs and apply Django's own rule per task instead (fitness/celery.py).
CELERY_DB_REUSE_MAX = 1000
CELERY_TASK_SEND_SENT_EVENT = False
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True

# --- The event outbox ------------------------------------------------------------------
# Published outbox rows are kept this long for audit, then pruned by the relay.
OUTBOX_RETENTION_DAYS = env_int("OUTBOX_RETENTION_DAYS", 7)
# How often the relay scans when no NOTIFY woke it (a lost notification only delays this long).
OUTBOX_RELAY_INTERVAL_SECONDS = env_float("OUTBOX_RELAY_INTERVAL_SECONDS", 5.0)
OUTBOX_RELAY_BATCH_SIZE = env_int("OUTBOX_RELAY_BATCH_SIZE", 500)
# A row RabbitMQ refuses (unroutable, nacked) waits this long before its next attempt,
# doubling with each refusal up to the maximum; the rows behind it are published meanwhile.
OUTBOX_REFUSED_BACKOFF_SECONDS = env_float("OUTBOX_REFUSED_BACKOFF_SECONDS", 5.0)
OUTBOX_REFUSED_BACKOFF_MAX_SECONDS = env_float("OUTBOX_REFUSED_BACKOFF_MAX_SECONDS", 600.0)

# --- The AI model ----------------------------------------------------------------------
# How often an AI worker checks which model version is active (hot reload, no restart).
ML_RELOAD_CHECK_SECONDS = env_float("ML_RELOAD_CHECK_SECONDS", 2.0)
# Dynamic batching in an AI worker (ml.batching): at most ML_BATCH_MAX photos per forward pass,
# gathered for at most ML_BATCH_WAIT_MS after the first. The worker runs as many threads
# (Procfile `worker-ai`, deploy/kubernetes/worker-ai.yaml), so that many photos can be in hand.
# Defaults for three instances on two cores; a 1-CPU pod uses the same (see README).
ML_BATCH_MAX = env_int("ML_BATCH_MAX", 8)
ML_BATCH_WAIT_MS = env_float("ML_BATCH_WAIT_MS", 10.0)

# --- Retraining on owner-confirmed photos (ml.retraining) ---------------------------------
# The share of confirmed photos (by hash) that are held out to judge candidates, never trained on.
ML_HOLDOUT_PERCENT = env_int("ML_HOLDOUT_PERCENT", 20)
# A retraining run is queued once this many confirmed samples are new...
ML_RETRAIN_MIN_NEW_SAMPLES = env_int("ML_RETRAIN_MIN_NEW_SAMPLES", 100)
# ...and, whatever the count, every ML_RETRAIN_INTERVAL_HOURS (Celery beat) when any is new.
ML_RETRAIN_INTERVAL_HOURS = env_float("ML_RETRAIN_INTERVAL_HOURS", 24.0)
# A run is skipped until this many samples are held out (too few cannot judge a candidate).
ML_RETRAIN_MIN_HOLDOUT = env_int("ML_RETRAIN_MIN_HOLDOUT", 10)
ML_RETRAIN_EPOCHS = env_int("ML_RETRAIN_EPOCHS", 4)
ML_RETRAIN_LEARNING_RATE = env_float("ML_RETRAIN_LEARNING_RATE", 1e-3)
# Synthetic pictures per (garment, condition) mixed into fine-tuning so the model keeps what it knew.
ML_RETRAIN_REPLAY_PER_CLASS = env_int("ML_RETRAIN_REPLAY_PER_CLASS", 10)
# Seconds a run may take (below RabbitMQ's 30-minute consumer_timeout for an unacked message).
ML_RETRAIN_TIME_LIMIT = env_int("ML_RETRAIN_TIME_LIMIT", 1500)
# How often beat sends ml.retrain to pick up queued runs whose job message was lost.
ML_RETRAIN_SWEEP_MINUTES = env_float("ML_RETRAIN_SWEEP_MINUTES", 5.0)

# --- Retention: how long each growing table keeps its rows (messaging/retention.py) -------
# `manage.py prune` and beat's hourly `retention.prune` job delete older rows in bounded
# batches. The relationships between these numbers are checked at start (messaging/checks.py).
#
# A dead letter can be replayed for this many days after its event occurred; `dlq replay`
# skips older ones (purge them; their history stays). RabbitMQ itself holds a dead letter
# until it is replayed or purged.
DEAD_LETTER_REPLAY_MAX_AGE_DAYS = env_int("DEAD_LETTER_REPLAY_MAX_AGE_DAYS", 14)
# The dedup window: a consumer's ProcessedEvent record is kept this long, so a redelivered,
# republished or replayed copy of an event finds it and has no second effect. It must outlast
# the replay window above plus the longest retry schedule; the 7 days beyond that cover a copy
# waiting in a work queue whose workers are down (a week-long outage is an incident anyway).
PROCESSED_EVENT_RETENTION_DAYS = env_int("PROCESSED_EVENT_RETENTION_DAYS", 21)
# Telemetry readings (received this long ago); at least MONITORING_MAX_READING_AGE_SECONDS.
TELEMETRY_RETENTION_DAYS = env_int("TELEMETRY_RETENTION_DAYS", 30)
# Notifications (the users' in-app inbox), with their push deliveries; only finished ones go.
NOTIFICATION_RETENTION_DAYS = env_int("NOTIFICATION_RETENTION_DAYS", 90)
# Push deliveries (which device got which push) of finished pushes, whose notification is this
# old. A replay consults them (at most one push per device), so at least the dedup window.
PUSH_DELIVERY_RETENTION_DAYS = env_int("PUSH_DELIVERY_RETENTION_DAYS", 30)
# Dead-letter history of replayed or purged dead letters, after their last replay, purge or
# death; a dead letter still in its `.dlq` keeps its history whatever its age.
DEAD_LETTER_RETENTION_DAYS = env_int("DEAD_LETTER_RETENTION_DAYS", 90)
# The audit trail: the event log (audit.EventLogEntry) and what each subscriber did with each
# event (messaging.EventActivity), by their time. The timeline of an upload needs both.
EVENT_LOG_RETENTION_DAYS = env_int("EVENT_LOG_RETENTION_DAYS", 90)
EVENT_ACTIVITY_RETENTION_DAYS = env_int("EVENT_ACTIVITY_RETENTION_DAYS", 90)
# Rows per delete (each batch its own short transaction), how often beat prunes, and how long
# one run may take (the rest waits for the next run; below CELERY_TASK_SOFT_TIME_LIMIT).
RETENTION_BATCH_SIZE = env_int("RETENTION_BATCH_SIZE", 5000)
RETENTION_PRUNE_INTERVAL_MINUTES = env_float("RETENTION_PRUNE_INTERVAL_MINUTES", 60.0)
RETENTION_PRUNE_TIME_BUDGET_SECONDS = env_float("RETENTION_PRUNE_TIME_BUDGET_SECONDS", 90.0)

# --- Celery beat -------------------------------------------------------------------------
# Beat runs django-celery-beat's DatabaseScheduler (Procfile, deploy/kubernetes/beat.yaml):
# the schedule and each entry's last run live in PostgreSQL and survive a restart. At start,
# beat writes the entries below into that schedule (django_celery_beat.PeriodicTask, by name),
# so a changed setting lands on the next start; an entry removed here stays in the database
# until it is disabled or deleted in the admin. Entry options go through its model, which
# knows `expire_seconds` (not Celery's `expires`).
CELERY_BEAT_SCHEDULE = {
    "retrain-on-schedule": {
        "task": "ml.retrain_scheduled",
        "schedule": ML_RETRAIN_INTERVAL_HOURS * 3600,
        "options": {"expire_seconds": int(ML_RETRAIN_INTERVAL_HOURS * 3600)},
    },
    "retrain-sweep": {
        "task": "ml.retrain",
        "schedule": ML_RETRAIN_SWEEP_MINUTES * 60,
        # a sweep nobody ran before the next one is worthless: do not let them pile up
        "options": {"expire_seconds": int(ML_RETRAIN_SWEEP_MINUTES * 60)},
    },
    "retention-prune": {
        "task": "retention.prune",
        "schedule": RETENTION_PRUNE_INTERVAL_MINUTES * 60,
        "options": {"expire_seconds": int(RETENTION_PRUNE_INTERVAL_MINUTES * 60)},
    },
}

# --- Health checks ---------------------------------------------------------------------
# Readiness (/readyz) depends on PostgreSQL only. RabbitMQ's state is reported there, in
# /metrics and on the operations page, from one connection attempt per process at most every
# BROKER_CHECK_CACHE_SECONDS, bounded by BROKER_CHECK_TIMEOUT_SECONDS (messaging.broker_status).
BROKER_CHECK_TIMEOUT_SECONDS = env_float("BROKER_CHECK_TIMEOUT_SECONDS", 2.0)
BROKER_CHECK_CACHE_SECONDS = env_float("BROKER_CHECK_CACHE_SECONDS", 5.0)

# Logs (fitness/logging.py): "json", one object per line, or "plain", a line for people;
# both carry correlation_id, event_id, task_id… where known. Celery workers, beat and
# gunicorn (its logger class, set in gunicorn.conf.py) use this configuration too.
LOG_FORMAT = log_format()  # the environment's LOG_FORMAT, checked; "json" by default
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {
        "context": {"()": "fitness.logging.ContextFilter"},
    },
    "formatters": {
        "json": {"()": "fitness.logging.JsonFormatter"},
        "plain": {"()": "fitness.logging.PlainFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["context"]},
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "amqp": {"level": "WARNING"},
        "kombu": {"level": "WARNING"},
    },
}

# --- Equipment monitoring and push notifications -------------------------------------
# Fault rules: error codes and thresholds, each with a severity. None: the default rules,
# monitoring.rules.DEFAULT_FAULT_RULES; the environment variable MONITORING_FAULT_RULES (a JSON
# object of the same shape, see monitoring/rules.py) replaces them.
MONITORING_FAULT_RULES = None
if os.environ.get("MONITORING_FAULT_RULES"):
    import json

    MONITORING_FAULT_RULES = json.loads(os.environ["MONITORING_FAULT_RULES"])
# Telemetry: readings per request, how far a machine's clock may run ahead, and how old a
# buffered reading may be.
MONITORING_TELEMETRY_MAX_READINGS = env_int("MONITORING_TELEMETRY_MAX_READINGS", 500)
# The largest body any endpoint reads (the photo upload has its own limit, PHOTO_MAX_BYTES): a
# telemetry batch of MONITORING_TELEMETRY_MAX_READINGS readings. One reading is at most
# TELEMETRY_READING_MAX_JSON_BYTES of JSON (213 with the longest value of every field, measured by
# tests/fitness/test_request_limits.py); twice that per reading leaves room for pretty-printing, plus
# 64 KiB: 321536 bytes with 500 readings. A larger body is refused unread with a JSON 413 naming the
# limit (fitness/request_limits.py); Django's own default (2.5 MB) would be eight times that.
TELEMETRY_READING_MAX_JSON_BYTES = 256
DATA_UPLOAD_MAX_MEMORY_SIZE = 2 * MONITORING_TELEMETRY_MAX_READINGS * TELEMETRY_READING_MAX_JSON_BYTES + 64 * 1024
MONITORING_MAX_CLOCK_SKEW_SECONDS = env_int("MONITORING_MAX_CLOCK_SKEW_SECONDS", 60)
MONITORING_MAX_READING_AGE_SECONDS = env_int("MONITORING_MAX_READING_AGE_SECONDS", 7 * 24 * 3600)
# Push notifications: "fcm" (firebase-admin) or "inbox" (stored only, the default when no
# credential is configured). FCM uses the service-account JSON in FCM_CREDENTIALS_FILE,
# or Google's application default credentials (GOOGLE_APPLICATION_CREDENTIALS, …).
FCM_CREDENTIALS_FILE = env("FCM_CREDENTIALS_FILE", "")
PUSH_BACKEND = env(
    "PUSH_BACKEND", "fcm" if FCM_CREDENTIALS_FILE or os.environ.get("GOOGLE_APPLICATION_CREDENTIALS") else "inbox"
)
# Another FCM endpoint (scheme://host[:port]), e.g. an emulator; empty: Google's.
FCM_ENDPOINT_URL = env("FCM_ENDPOINT_URL", "")
# Recipients and pushes per batch (FCM's send_each takes at most 500), and the HTTP timeout.
PUSH_BATCH_SIZE = min(env_int("PUSH_BATCH_SIZE", 500), 500)
PUSH_TIMEOUT_SECONDS = env_float("PUSH_TIMEOUT_SECONDS", 10.0)
# Two "status" choice sets now appear in the API (tasks, notifications): the schema names them.
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"] = {
    **SPECTACULAR_SETTINGS.get("ENUM_NAME_OVERRIDES", {}),
    "TaskStatusEnum": "tasks.models.LaundryTask.Status",
    "NotificationStatusEnum": "notifications.models.Notification.Status",
}

# --- Observability: GET /metrics, queue depths, Flower's broker tab (observability/) ----
# prometheus-client's multiprocess mode: every process (gunicorn workers, Celery pool
# children, the relay) writes its counters and histograms to files in this directory, and
# GET /metrics sums them. The project package has chosen, made and exported it before these
# settings load (observability.multiprocess.configure_multiprocess_dir: the environment's
# PROMETHEUS_MULTIPROC_DIR, else var/metrics, else a directory under the temp dir).
PROMETHEUS_MULTIPROC_DIR = os.environ["PROMETHEUS_MULTIPROC_DIR"]
# GET /metrics needs `Authorization: Bearer <token>` when this is set; unset, it is open in
# development and closed (403) in production (observability/views.py).
METRICS_TOKEN = env("METRICS_TOKEN", "")
# A port on which Celery workers and the relay serve their own process's /metrics (one
# pod each in Kubernetes, where the web's /metrics cannot see their files); unset: off.
METRICS_EXPORTER_PORT = env_int("METRICS_EXPORTER_PORT", 0) or None
# The address it listens on: this host only in development; in production the pod's every
# address, for Prometheus, which alone may reach the port (deploy/kubernetes/network-policy.yaml).
METRICS_EXPORTER_ADDRESS = env("METRICS_EXPORTER_ADDRESS", "0.0.0.0" if PRODUCTION else "127.0.0.1")
# RabbitMQ's management API (http[s]://user:password@host:15672); empty: the first broker
# of CELERY_BROKER_URL on port 15672 with the broker's credentials. Queue depths come from
# it (ready, unacked, consumers), or from passive declares (no unacked) when it is down.
RABBITMQ_MANAGEMENT_URL = env("RABBITMQ_MANAGEMENT_URL", "")
QUEUE_STATS_TIMEOUT_SECONDS = env_float("QUEUE_STATS_TIMEOUT_SECONDS", 2.0)
# A process reads the queue depths (a management API call with the broker's administrator
# credentials) and the outbox backlog at most once in this many seconds, however often /metrics
# is scraped; the management API's own figures are up to 5 s old anyway. 0: every call reads.
STATS_CACHE_SECONDS = env_float("STATS_CACHE_SECONDS", 5.0)
