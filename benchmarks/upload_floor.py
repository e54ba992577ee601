"""The bare-Django floor of benchmarks/api_submit.py: what Django itself costs for an upload.

One view takes the same multipart photo as POST /api/v1/tasks/, writes it to disk and
answers 202: no database, no middleware, no authentication, no image check. It is a
gunicorn app and config in one module, so it runs without the project's gunicorn.conf.py
and settings:

    FLOOR_UPLOAD_DIR=/tmp/floor gunicorn benchmarks.upload_floor:application \\
        --config python:benchmarks.upload_floor --workers 4 --bind 127.0.0.1:8766
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from django.conf import settings

# gunicorn settings, read when this module is given as --config (the project's are not)
preload_app = True
control_socket_disable = True  # one fixed path per user: the project's server runs beside this one

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="the bare-Django floor of a benchmark",  # noqa: S106 - signs nothing
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        MIDDLEWARE=[],
        INSTALLED_APPS=[],
        DATABASES={},  # upload limits: Django's defaults, as in the project (a 200 KB photo stays in memory)
    )

from django.core.wsgi import get_wsgi_application  # noqa: E402
from django.http import HttpResponse, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402

UPLOAD_DIR = Path(os.environ.get("FLOOR_UPLOAD_DIR", "var/upload-floor"))


def upload(request):
    photo = request.FILES.get("photo") if request.method == "POST" else None
    if photo is None:
        return JsonResponse({"photo": ["POST a multipart photo."]}, status=400)
    name = f"{uuid.uuid4().hex}.jpg"
    with open(UPLOAD_DIR / name, "wb") as out:
        for chunk in photo.chunks():
            out.write(chunk)
    return JsonResponse({"photo": name, "status": "submitted"}, status=202)


def healthz(request):
    return HttpResponse("ok")


urlpatterns = [path("upload/", upload), path("healthz", healthz)]

application = get_wsgi_application()
