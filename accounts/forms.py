from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.utils.translation import gettext_lazy as _

from accounts.login_throttle import login_retry_after


class LoginForm(AuthenticationForm):
    """Django's login form; while failed logins are throttled (accounts.login_throttle)
    it says so instead of blaming the password."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "throttled": _("Too many failed logins for this account or from your address. Try again in %(minutes)s minutes."),
    }

    def get_invalid_login_error(self) -> forms.ValidationError:
        wait = login_retry_after(self.request, self.cleaned_data.get("username"))
        if wait:
            return forms.ValidationError(
                self.error_messages["throttled"], code="throttled", params={"minutes": max(1, round(wait / 60))}
            )
        return super().get_invalid_login_error()
