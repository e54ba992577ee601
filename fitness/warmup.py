"""Warm the web app before gunicorn forks its workers, so that no worker's first request waits.

gunicorn.conf.py loads the app in the master (`preload_app`) and calls `warm_up()` there
(`when_ready`, before any worker exists); every worker is a fork of that master and starts
with what it did already done. What a worker's first request used to spend its time on
(benchmarks/cold_start.py):

* importing the URLconf: every view, serializer, DRF and drf-spectacular;
* building the URL resolvers' reverse tables (the admin reverses ~50 URLs per page);
* DRF's settings, which import their classes on first use;
* compiling the templates (the admin's, ours, the forms' widgets) and loading the
  translation catalogue and the static files' manifest.

Nothing here opens a database or broker connection, and `warm_up` closes any that something
opened anyway: a connection inherited across fork would be shared by several processes.
The database connection of a worker is opened by its first request, as before.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

logger = logging.getLogger("fitness.warmup")


def _namespaces(resolver, outer: tuple[str, ...] = ()):
    """(namespace path, resolver) of every namespaced include below `resolver`."""
    from django.urls import URLResolver

    for pattern in resolver.url_patterns:
        if isinstance(pattern, URLResolver):
            path = (*outer, pattern.namespace) if pattern.namespace else outer
            if pattern.namespace:
                yield path, pattern
            yield from _namespaces(pattern, path)


def _urls() -> None:
    from django.urls import NoReverseMatch, get_resolver, reverse

    get_resolver().reverse_dict  # noqa: B018 (imports the URLconf, builds the root's reverse tables)
    # reverse("admin:…") builds a namespace's own tables (a resolver of its own, cached): one
    # reverse per namespace, right or wrong arguments alike, builds them
    for path, resolver in _namespaces(get_resolver()):
        names = [key for key in resolver.reverse_dict if isinstance(key, str)]
        if names:
            try:
                reverse(":".join((*path, names[0])))
            except NoReverseMatch:
                pass


def _drf() -> None:
    from rest_framework.settings import api_settings

    for name in api_settings.import_strings:
        getattr(api_settings, name)


def _template_names() -> list[tuple[str, str]]:
    """(engine alias, template name) of every HTML template of the project's engines."""
    from django.template import engines

    names = []
    for engine in engines.all():
        dirs = list(getattr(engine, "template_dirs", ()))
        for folder in map(Path, dirs):
            names += [(engine.name, str(path.relative_to(folder))) for path in folder.rglob("*.html")]
    return names


def _templates() -> int:
    from django.forms import Form, fields
    from django.template import TemplateSyntaxError, engines

    compiled = 0
    for alias, name in dict.fromkeys(_template_names()):
        try:
            engines[alias].get_template(name)
            compiled += 1
        except (TemplateSyntaxError, LookupError, ImportError):
            pass  # a template of an app's that needs something this project does not have

    class Sample(Form):  # the forms' widget templates (a separate engine), as the admin's forms use them
        text = fields.CharField()
        number = fields.IntegerField()
        choice = fields.ChoiceField(choices=[("a", "a")])
        flag = fields.BooleanField()
        date = fields.DateTimeField()

    str(Sample())
    return compiled


def _i18n_and_static() -> None:
    from django.conf import settings
    from django.contrib.staticfiles.storage import staticfiles_storage
    from django.utils import translation

    with translation.override(settings.LANGUAGE_CODE):
        translation.gettext("Log in")
    staticfiles_storage.url("admin/css/base.css")  # loads the manifest (ValueError: no collectstatic)


def close_connections() -> None:
    """Close every database and broker connection of this process (before it forks)."""
    from django.db import connections

    from messaging import broker

    connections.close_all()
    broker.close_connection()


def warm_up() -> float:
    """Do the first request's one-off work now; returns the seconds it took. Never raises."""
    started = time.monotonic()
    steps = {"urls": _urls, "drf": _drf, "templates": _templates, "i18n and static files": _i18n_and_static}
    try:
        for step, run in steps.items():
            try:
                run()
            except Exception:  # a step that fails leaves that work to the first request, as before
                logger.warning("warm-up step %s failed; the first requests will do it", step, exc_info=True)
    finally:
        close_connections()
    return time.monotonic() - started
