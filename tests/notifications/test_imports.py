"""firebase-admin is loaded only by the processes that push, when they first need it."""

import subprocess
import sys

from tests.support import ROOT

WEB_PROCESS = """
import os, sys
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
os.environ["PUSH_BACKEND"] = "fcm"
from fitness.wsgi import application
from django.urls import get_resolver
from django.test import Client
get_resolver().url_patterns
import notifications.api, notifications.admin, monitoring.api
Client().get("/healthz")
print("FIREBASE:" + ",".join(sorted(m for m in sys.modules if m.startswith("firebase_admin"))[:3]))
"""


def test_the_web_process_never_imports_firebase_admin():
    out = subprocess.run(
        [sys.executable, "-c", WEB_PROCESS], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "FIREBASE:", out
