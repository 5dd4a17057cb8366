from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from core.media import serve_media
from core.metrics import metrics_view
from core.views import healthz

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
    path("metrics", metrics_view, name="metrics"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("django-rq/", include("django_rq.urls")),
]

# Local storage served by the app itself when SERVE_MEDIA is on (development, tests;
# production puts a CDN or S3 in front): only files a row names, never as active content.
urlpatterns.append(re_path(r"^media/(?P<path>.*)$", serve_media, name="media"))

handler400 = "core.errors.handler400"
handler403 = "core.errors.handler403"
handler404 = "core.errors.handler404"
handler500 = "core.errors.handler500"
