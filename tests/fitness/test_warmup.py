"""fitness.warmup: what gunicorn's master does before it forks the workers (gunicorn.conf.py)."""

from __future__ import annotations

from django.db import connection
from django.template import engines

from fitness.warmup import warm_up
from messaging import broker


def test_warm_up_compiles_the_admins_templates_and_leaves_no_connection_to_share_across_fork(
    django_db_setup, django_db_blocker
):
    with django_db_blocker.unblock():
        connection.ensure_connection()  # as if something had opened one in the master
        broker._publisher._connect()  # and a publisher connection
        seconds = warm_up()
    assert seconds > 0
    assert connection.connection is None and broker._publisher.connection is None
    loader = engines["django"].engine.template_loaders[0]  # the cached loader (DEBUG off)
    assert "admin/change_list.html" in {key.split("-")[0] for key in loader.get_template_cache}
