"""Architecture rules that keep the processes independent (DG-02, DG-03 in docs/decisions.md)."""

import ast
import subprocess
import sys
from pathlib import Path

from tests.support import ROOT

PRODUCER_PACKAGES = ["fitness", "messaging", "tasks", "branches", "monitoring"]
CONSUMER_PACKAGES = {"ml", "notifications"}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_the_producer_side_imports_nothing_from_ml_or_notifications():
    offenders = []
    for package in PRODUCER_PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for name in imported_modules(path):
                if name.split(".")[0] in CONSUMER_PACKAGES:
                    offenders.append(f"{path.relative_to(ROOT)} imports {name}")
    assert offenders == []


WEB_PROCESS = """
import os, sys
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
from fitness.wsgi import application
from django.urls import get_resolver
from django.test import Client
import pkgutil, importlib
for package in ("fitness", "messaging", "tasks", "branches", "monitoring"):
    module = importlib.import_module(package)
    for info in pkgutil.walk_packages(module.__path__, package + "."):
        if ".migrations" not in info.name:
            importlib.import_module(info.name)
get_resolver().url_patterns  # every view module
Client().get("/healthz")
loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith(("torch.", "torchvision")))
print("TORCH:" + ",".join(loaded[:5]))
"""


def test_the_web_process_never_imports_torch():
    out = subprocess.run(
        [sys.executable, "-c", WEB_PROCESS], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "TORCH:", out
