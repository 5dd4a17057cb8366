from django.urls import include, path

from web import views

urlpatterns = [
    path("", views.home, name="web-home"),
    path("app/", views.channels, name="web-channels"),
    path("app/channels/new", views.channel_new, name="web-channel-new"),
    path("app/channels/<uuid:channel_id>/", views.channel, name="web-channel"),
    path("app/studio/", views.studio, name="web-studio"),
    # Django's set_language: the language switch posts here.
    path("i18n/", include("django.conf.urls.i18n")),
]
