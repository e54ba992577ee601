"""The API's documentation pages: Swagger UI (/api/docs/) and ReDoc (/api/redoc/).

Both load their scripts and styles from our static files (drf-spectacular-sidecar; see
SPECTACULAR_SETTINGS). Their responses also carry a Content-Security-Policy that lets the
browser load nothing from another host: ReDoc's bundle shows a "Redocly" logo from
cdn.redoc.ly, which no setting turns off; the browser blocks it and ReDoc hides the image.
"""

from __future__ import annotations

from drf_spectacular.views import SpectacularRedocView, SpectacularSwaggerView

# 'unsafe-inline': Swagger UI's set-up script is inline (drf-spectacular's template), and both
# inject their styles; blob: ReDoc's search runs in a Web Worker from a blob: URL.
SAME_ORIGIN_ONLY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; font-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'self'; form-action 'self'"
)


class _SameOriginOnly:
    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Content-Security-Policy"] = SAME_ORIGIN_ONLY
        return response


class SwaggerView(_SameOriginOnly, SpectacularSwaggerView):
    pass


class RedocView(_SameOriginOnly, SpectacularRedocView):
    # drf-spectacular's ReDoc page minus its Google Fonts links
    template_name = "api/redoc.html"
