from collections.abc import Callable
from functools import wraps
from typing import Any

import django_rq.urls
from django.conf import settings
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, include, path, re_path
from django.utils.csp import CSP
from django.views.decorators.csp import csp_override
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from core.media import serve_media
from core.metrics import metrics_view
from core.views import healthz, livez, readyz


def superuser_only(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """django-rq lets any staff user empty, delete and requeue jobs; here only superusers
    may (a signed-in non-superuser gets 403). Anonymous callers reach the view, which sends
    them to the admin's login (or answers its stats to RQ_API_TOKEN, if one is set)."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.user.is_authenticated and not request.user.is_superuser:
            raise PermissionDenied("The queue dashboard is for superusers only.")
        return view(request, *args, **kwargs)

    return wrapped


rq_dashboard_urls = [
    URLPattern(p.pattern, superuser_only(p.callback), p.default_args, p.name) for p in django_rq.urls.urlpatterns
]

# Swagger UI under the site's Content-Security-Policy: its script comes from a URL of its
# own (the split view), not inline; its page keeps one inline <style>, allowed here only.
API_DOCS_CSP: dict[str, list[str]] = {**settings.SECURE_CSP, "style-src": [CSP.SELF, CSP.UNSAFE_INLINE]}
api_docs = csp_override(API_DOCS_CSP)(SpectacularSwaggerSplitView.as_view(url_name="schema"))

urlpatterns = [
    path("", include("accounts.urls")),
    path("", include("contents.urls")),
    path("", include("realtime.urls")),
    path("", include("videos.urls")),
    path("", include("aijobs.urls")),
    path("", include("notifications.urls")),
    path("", include("moderation.urls")),
    path("", include("web.urls")),
    path("healthz", healthz, name="healthz"),
    path("livez", livez, name="livez"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", api_docs, name="docs"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("django-rq/", include((rq_dashboard_urls, "django_rq"))),
]

# Local storage served by the app itself when SERVE_MEDIA is on (development, tests;
# production puts a CDN or S3 in front): only files a row names, never as active content.
urlpatterns.append(re_path(r"^media/(?P<path>.*)$", serve_media, name="media"))

handler400 = "core.errors.handler400"
handler403 = "core.errors.handler403"
handler404 = "core.errors.handler404"
handler500 = "core.errors.handler500"
