"""Kubernetes probes of the Celery workers: files kept fresh by a real worker."""

import time

from tests.support import WorkerProcess, wait_for


def test_a_worker_keeps_its_probe_files_fresh_and_drops_ready_when_stopping(tmp_path, broker_vhost, log_dir):
    probes = tmp_path / "probes"
    worker = WorkerProcess(["preference.created"], name="probes", log_dir=log_dir,
                           CELERY_PROBE_DIR=str(probes)).start()
    try:
        wait_for(lambda: (probes / "ready").exists(), timeout=30, what="the ready file")
        first = (probes / "alive").stat().st_mtime
        wait_for(lambda: (probes / "alive").stat().st_mtime > first, timeout=30, what="a heartbeat touch")
    finally:
        worker.stop()
    assert not (probes / "ready").exists()
    assert time.time() - (probes / "alive").stat().st_mtime < 60
