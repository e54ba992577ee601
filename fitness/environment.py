"""Which environment this process runs in, and the checks production makes at start.

`DJANGO_ENV=production` (set by the image and deploy/kubernetes/config.yaml) is the one switch;
anything else, or nothing, is development.

The manifests ship placeholder secrets (deploy/kubernetes/secrets.yaml: "CHANGE-ME..."). A
process started with one of them must stop with one line naming the variable, not run with a
password that everybody who read the repository knows: `placeholder_secrets` finds them, the
web (gunicorn.conf.py) and `manage.py setup_broker` refuse to start on them.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping

PRODUCTION = "production"
# The variables that carry a secret: set from the Secrets of deploy/kubernetes/secrets.yaml
# (CELERY_BROKER_URL and RABBITMQ_MANAGEMENT_URL hold a password in their URL).
SECRET_VARIABLES = (
    "DJANGO_SECRET_KEY", "DATABASE_URL", "RABBITMQ_PASSWORD", "CELERY_BROKER_URL", "RABBITMQ_MANAGEMENT_URL",
    "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "METRICS_TOKEN", "FLOWER_BASIC_AUTH",
)
PLACEHOLDER = re.compile(r"change[-_ ]?me", re.IGNORECASE)


def is_production(environ: Mapping[str, str] = os.environ) -> bool:
    return environ.get("DJANGO_ENV", "development").strip().lower() == PRODUCTION


def placeholder_secrets(environ: Mapping[str, str] = os.environ) -> list[str]:
    """The secret variables whose value is still a placeholder of the manifests."""
    return [name for name in SECRET_VARIABLES if PLACEHOLDER.search(environ.get(name, ""))]


def placeholder_problem(environ: Mapping[str, str] = os.environ) -> str:
    """One line saying which variables hold a placeholder in production; "" when none does."""
    if not is_production(environ):
        return ""
    found = placeholder_secrets(environ)
    if not found:
        return ""
    return (f"{', '.join(found)} still hold{'s' if len(found) == 1 else ''} the placeholder of "
            f"deploy/kubernetes/secrets.yaml (CHANGE-ME): set the real secret before starting (DJANGO_ENV=production)")


def exit_on_placeholder_secrets(environ: Mapping[str, str] = os.environ) -> None:
    """For a process's start: print the problem as one line and exit 1."""
    problem = placeholder_problem(environ)
    if problem:
        print(f"refusing to start: {problem}", file=sys.stderr)
        raise SystemExit(1)
