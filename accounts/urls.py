from django.urls import path

from accounts.views import MeView, TokenView

urlpatterns = [
    path("v1/auth/token", TokenView.as_view(), name="auth-token"),
    path("v1/auth/me", MeView.as_view(), name="auth-me"),
]
