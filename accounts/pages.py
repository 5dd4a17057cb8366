"""Account pages of Django's own, with the login throttle's counters on every password
they check (the login page itself is accounts.views.LoginPageView)."""

from typing import Any

from django.contrib.auth.views import PasswordChangeView
from django.http import HttpResponse

from accounts.forms import ThrottledPasswordChangeForm


class PasswordChangePageView(PasswordChangeView):
    """Django's password change page; while the account or the client is throttled
    for failed logins it answers 429 with Retry-After, without checking the old password."""

    form_class = ThrottledPasswordChangeForm

    def get_form_kwargs(self) -> dict[str, Any]:
        return {**super().get_form_kwargs(), "request": self.request}

    def form_invalid(self, form: Any) -> HttpResponse:
        response = super().form_invalid(form)
        if form.has_error("old_password", code="throttled"):
            response.status_code = 429
            response["Retry-After"] = str(form.retry_after)
        return response
