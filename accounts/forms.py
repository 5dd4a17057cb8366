from typing import Any

from django import forms
from django.contrib.auth.forms import AuthenticationForm, PasswordChangeForm
from django.utils.translation import gettext_lazy as _

from accounts.login_throttle import (
    LoginRateThrottled,
    LoginThrottled,
    login_refusal,
    login_retry_after,
    record_login_failure,
)


def _throttled_error(refusal: LoginThrottled) -> forms.ValidationError:
    """The form's error for a refused login: code "throttled", which the pages answer 429."""
    message = (
        _("Too many logins from your address. Try again in %(seconds)s seconds.")
        if isinstance(refusal, LoginRateThrottled)
        else _("Too many failed logins for this account or from your address. Try again in %(minutes)s minutes.")
    )
    wait = int(refusal.wait or 1)
    return forms.ValidationError(message, code="throttled", params={"seconds": wait, "minutes": max(1, round(wait / 60))})


class LoginForm(AuthenticationForm):
    """Django's login form; while logins are throttled (accounts.login_throttle) it
    says so instead of blaming the password."""

    def get_invalid_login_error(self) -> forms.ValidationError:
        refusal = login_refusal(self.request, self.cleaned_data.get("username"))
        if refusal is not None:
            return _throttled_error(refusal)
        return super().get_invalid_login_error()


class ThrottledPasswordChangeForm(PasswordChangeForm):
    """Django's password change form, whose old-password check is a login like any
    other: a wrong one counts as a failed login for the account and the client (the
    counters of accounts.login_throttle), and while either is throttled the old
    password is not checked at all (the right one is refused too until the window
    passes). Without this, anyone holding a signed-in browser could guess the
    password without limit."""

    retry_after = 0

    def __init__(self, user: Any, *args: Any, request: Any = None, **kwargs: Any) -> None:
        super().__init__(user, *args, **kwargs)
        self.request = request

    def clean_old_password(self) -> str:
        username = self.user.get_username()
        self._refuse_if_throttled(username)
        try:
            return super().clean_old_password()
        except forms.ValidationError:
            record_login_failure(self.request, username)
            # The failure that reaches a limit is answered as throttled, as at the login.
            self._refuse_if_throttled(username)
            raise

    def _refuse_if_throttled(self, username: str) -> None:
        wait = login_retry_after(self.request, username)
        if wait:
            self.retry_after = wait
            raise _throttled_error(LoginThrottled(wait))
