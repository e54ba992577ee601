# gunicorn reads this file from the working directory, so every way the web process is
# started (Procfile, Dockerfile, deploy/kubernetes/web.yaml) logs the same JSON lines.
# Per-request lines come from the app ("request finished", messaging.middleware), so
# gunicorn's access log stays off; `--access-logfile -` turns it on, in the same format.
logger_class = "fitness.logging.GunicornLogger"
