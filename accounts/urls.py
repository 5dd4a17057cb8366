from django.urls import path

from accounts.pages import PasswordChangePageView
from accounts.views import LoginPageView, MeView, TokenDetailView, TokenListView, TokenView

urlpatterns = [
    # Ahead of django.contrib.auth.urls (config/urls.py), which serves the other pages.
    path("accounts/login/", LoginPageView.as_view(), name="login"),
    path("accounts/password_change/", PasswordChangePageView.as_view(), name="password_change"),
    path("v1/auth/token", TokenView.as_view(), name="auth-token"),
    path("v1/auth/tokens", TokenListView.as_view(), name="auth-tokens"),
    path("v1/auth/tokens/<uuid:token_id>", TokenDetailView.as_view(), name="auth-token-detail"),
    path("v1/auth/me", MeView.as_view(), name="auth-me"),
]
