"""The web process must never import torch: only ml.inference, ml.training and ml.retraining_pipeline (and what
they use) do."""

import subprocess
import sys

import pytest

from tests.support import ROOT

TORCH_FREE = (
    "ml.models", "ml.selectors", "ml.services", "ml.labels", "ml.errors", "ml.admin", "ml.datasets",
    "ml.defaults", "ml.retraining", "ml.jobs", "ml.management.commands.train_model",
    "ml.management.commands.retrain",
)

CHECK = """
import os, sys
os.environ["DJANGO_SETTINGS_MODULE"] = "tests.settings"
import django
django.setup()
import {modules}
loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith(("torch.", "torchvision")))
assert not loaded, loaded[:5]
print("torch-free")
"""


@pytest.mark.parametrize("modules", [", ".join(TORCH_FREE)])
def test_the_modules_the_web_process_uses_do_not_import_torch(modules):
    result = subprocess.run(
        [sys.executable, "-c", CHECK.format(modules=modules)], cwd=ROOT, capture_output=True, text=True, timeout=120
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "torch-free"
