# gunicorn reads this file from the working directory, so every way the web process is
# started (Procfile, Dockerfile, deploy/kubernetes/web.yaml) runs with these settings.
#
# Logs: gunicorn's own lines in the app's format (LOG_FORMAT: JSON, or plain under
# `make run`). Per-request lines come from the app ("request finished",
# messaging.middleware), so gunicorn's access log stays off; `--access-logfile -` turns it
# on, in the same format.
import gc
import os

from fitness.environment import exit_on_placeholder_secrets

# In production a placeholder secret of the manifests stops the web here, with one line.
exit_on_placeholder_secrets()

logger_class = "fitness.logging.GunicornLogger"
# gunicorn's control socket (gunicornc) is one fixed path per user: the several web
# processes that tests and benchmarks start beside `make run` would take it from each other.
control_socket_disable = True

# Warm workers: the master loads the app (preload_app) and does the first request's one-off
# work (fitness.warmup: URLconf, DRF, templates...) before it forks any worker, so every
# worker answers its first request as fast as its hundredth (benchmarks/cold_start.py).
# The master holds no database or broker connection when it forks (warm_up closes any);
# each worker opens its own on its first request. New code needs a restart, not a HUP.
# WEB_PRELOAD=0 turns both off (each worker loads the app itself, cold; `--reload` in
# development; benchmarks/cold_start.py compares the two).
preload_app = os.environ.get("WEB_PRELOAD", "1").strip() != "0"


# What a request line and headers may be, before Django sees them (the body: DATA_UPLOAD_MAX_MEMORY_SIZE,
# fitness/request_limits.py). The longest URL of ours (an admin list with filters) is far below
# 4094 bytes (414 beyond); a browser sends about 20 headers (431 beyond 50), and no header of ours
# (a token, the admin's cookies) comes near 8190 bytes (431 beyond).
limit_request_line = 4094
limit_request_fields = 50
limit_request_field_size = 8190


def when_ready(server):
    """In the master, after the app is loaded and before the first worker is forked."""
    from fitness.warmup import warm_up

    if not preload_app:
        return
    server.log.info("App warmed up in %.0f ms", warm_up() * 1000)
    # What the master built stays shared with the workers (copy-on-write) only while nothing
    # writes to it: the garbage collector's first pass in a worker would touch every object.
    gc.collect()
    gc.freeze()


def post_worker_init(worker):
    """Logged once a worker has loaded the app and is about to accept requests."""
    worker.log.info("Worker ready (pid: %s)", worker.pid)
