"""The metric files' directory: chosen before anything imports prometheus-client, made, exported."""

from __future__ import annotations

import os
import subprocess
import sys

from observability.multiprocess import DEFAULT_DIRECTORY, VARIABLE, configure_multiprocess_dir
from tests.support import ROOT, subprocess_env


def test_the_variables_directory_is_made_and_kept(tmp_path):
    environ = {VARIABLE: str(tmp_path / "metrics" / "web")}
    assert configure_multiprocess_dir(environ) == str(tmp_path / "metrics" / "web")
    assert (tmp_path / "metrics" / "web").is_dir() and environ[VARIABLE] == str(tmp_path / "metrics" / "web")
    assert configure_multiprocess_dir(environ) == str(tmp_path / "metrics" / "web")  # again: the same


def test_without_the_variable_it_is_var_metrics():
    environ: dict[str, str] = {}
    assert configure_multiprocess_dir(environ) == str(DEFAULT_DIRECTORY) == environ[VARIABLE]
    assert DEFAULT_DIRECTORY == ROOT / "var" / "metrics" and DEFAULT_DIRECTORY.is_dir()


def test_a_directory_that_cannot_be_made_gives_way_to_one_under_the_temp_dir(tmp_path):
    (tmp_path / "a-file").write_text("")
    environ = {VARIABLE: str(tmp_path / "a-file" / "metrics")}  # not a directory, even for root
    directory = configure_multiprocess_dir(environ)
    assert os.path.basename(directory) == f"fitness-metrics-{os.getuid()}" and os.path.isdir(directory)
    assert environ[VARIABLE] == directory


def test_the_web_process_writes_its_metrics_to_files_of_the_variables_directory(tmp_path):
    # as gunicorn loads it: fitness.wsgi, the product's settings, then the metrics
    script = (
        "import fitness.wsgi\n"
        "from django.conf import settings\n"
        "from observability import metrics\n"
        "print(metrics.multiprocess_mode(), settings.PROMETHEUS_MULTIPROC_DIR)\n"
    )
    directory = tmp_path / "not-yet"
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
        env=subprocess_env(DJANGO_SETTINGS_MODULE="fitness.settings", PROMETHEUS_MULTIPROC_DIR=str(directory)),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", str(directory)]
    assert directory.is_dir()
