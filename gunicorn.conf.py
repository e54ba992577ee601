# gunicorn reads this file from the working directory, so every way the web process is
# started (Procfile, Dockerfile, deploy/kubernetes/web.yaml) logs the same JSON lines.
# Per-request lines come from the app ("request finished", messaging.middleware), so
# gunicorn's access log stays off; `--access-logfile -` turns it on, in the same format.
logger_class = "fitness.logging.GunicornLogger"
# gunicorn's control socket (gunicornc) is one fixed path per user: the several web
# processes that tests and benchmarks start beside `make run` would take it from each other.
control_socket_disable = True


def post_worker_init(worker):
    """Logged once a worker has loaded the app and is about to accept requests."""
    worker.log.info("Worker ready (pid: %s)", worker.pid)
