from django.urls import path

from accounts.views import TokenView

urlpatterns = [path("v1/auth/token", TokenView.as_view(), name="auth-token")]
