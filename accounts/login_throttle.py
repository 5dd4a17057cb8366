"""Password guessing and login floods: failed logins are counted per account and per
client, successful ones per client, and while any of those counts is over its limit no
password is checked for them.

Every password check goes through Django's `authenticate()`: the token endpoint, the
login page and the admin's. The backend below refuses while throttled, and
`user_login_failed` (sent by `authenticate()` for every failure, the refused ones
included) counts. One account cannot be guessed at from many addresses, nor many
accounts from one. The password change form's old-password check counts as a failed
login too (accounts.forms.ThrottledPasswordChangeForm).

A successful login is counted too, per client, but with a limit of its own: each costs
a password hash (~0.36 s of CPU with Django's PBKDF2), so a client logging in without
end was a way to take the workers' CPU (32 clients pushed other requests' p50 from 13
to 61 ms). LOGIN_SUCCESSES_PER_ADDRESS a minute is far above what people behind one
address (an office) need. A refusal for that rate is not counted as a failure: no
password was checked, and an account must not be locked because its owner's office
logged in a lot.

The counts live in the cache (Redis), in fixed windows (LOGIN_FAILURE_WINDOW_SECONDS;
a minute for successes): a client gets at most twice a limit around a window's edge,
and the wait to announce is the rest of the window. The client is
core.client.client_identity (the socket's peer, or what our own trusted proxies
forwarded, never a header a client chose; an IPv6 address counts as its
/CLIENT_IPV6_PREFIX network).
"""

import hashlib
import time
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.signals import user_login_failed
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.dispatch import receiver
from rest_framework.exceptions import Throttled

from core.cache import UNREACHABLE
from core.client import client_identity

# The window successful logins are counted in (LOGIN_SUCCESSES_PER_ADDRESS is a minute's).
SUCCESS_WINDOW_SECONDS = 60


class LoginThrottled(Throttled):
    default_detail = "Too many failed logins for this account or from this address."
    wait: int | None  # set by Throttled.__init__ (seconds, rounded up); its stubs leave it undeclared
    extra_detail_singular = "Try again in {wait} second."
    extra_detail_plural = "Try again in {wait} seconds."


class LoginRateThrottled(LoginThrottled):
    default_detail = "Too many logins from this address."


def _window(length: int | None = None) -> tuple[int, int]:
    """The current window's number and the seconds left in it."""
    length = length or settings.LOGIN_FAILURE_WINDOW_SECONDS
    now = time.time()
    return int(now // length), max(1, int(length - now % length))


def _digest(value: str) -> str:
    # Keys of a fixed length, and no usernames or addresses stored in the cache.
    return hashlib.sha256(value.encode()).hexdigest()[:32]


def _counters(request: Any, username: str | None) -> list[tuple[str, int]]:
    """(cache key, limit) for each count this attempt belongs to."""
    window, _ = _window()
    counters = []
    if username:
        counters.append((f"login-failures:account:{_digest(username)}:{window}", settings.LOGIN_FAILURES_PER_ACCOUNT))
    if request is not None:
        client = client_identity(request)
        counters.append((f"login-failures:address:{_digest(client)}:{window}", settings.LOGIN_FAILURES_PER_ADDRESS))
    return counters


def login_retry_after(request: Any, username: str | None) -> int:
    """Seconds until a login for `username` from this request's client may be tried
    again after failures; 0 if it may be now."""
    counters = _counters(request, username)
    counts = cache.get_many([key for key, _ in counters])
    if any(counts.get(key, 0) >= limit for key, limit in counters):
        return _window()[1]
    return 0


def _success_key(request: Any) -> str | None:
    """The cache key of this client's successful logins in the current window; None
    when they are not limited (no request: a management command)."""
    if request is None or settings.LOGIN_SUCCESSES_PER_ADDRESS <= 0:
        return None
    window, _ = _window(SUCCESS_WINDOW_SECONDS)
    return f"login-successes:address:{_digest(client_identity(request))}:{window}"


def login_rate_retry_after(request: Any) -> int:
    """Seconds until this request's client may log in again after its successful
    logins reached LOGIN_SUCCESSES_PER_ADDRESS in this minute; 0 if it may now."""
    key = _success_key(request)
    if key is None or cache.get(key, 0) < settings.LOGIN_SUCCESSES_PER_ADDRESS:
        return 0
    return _window(SUCCESS_WINDOW_SECONDS)[1]


def login_refusal(request: Any, username: str | None) -> LoginThrottled | None:
    """Why a login that authenticate() refused was not even checked, as the 429 to
    answer; None if it was checked and failed."""
    wait = login_retry_after(request, username)
    if wait:
        return LoginThrottled(wait)
    wait = login_rate_retry_after(request)
    if wait:
        return LoginRateThrottled(wait)
    return None


def record_login_success(request: Any) -> bool:
    """Count a successful login of this request's client: False if it is one more
    than LOGIN_SUCCESSES_PER_ADDRESS this minute (logins racing past the check before
    the password). With the cache unreachable it is not counted, as the API's
    throttles count nothing then: nobody is locked out by a Redis restart."""
    key = _success_key(request)
    if key is None:
        return True
    try:
        cache.add(key, 0, timeout=SUCCESS_WINDOW_SECONDS)
        try:
            count = cache.incr(key)
        except ValueError:  # expired in between: the next window's first login
            cache.set(key, 1, timeout=SUCCESS_WINDOW_SECONDS)
            count = 1
    except UNREACHABLE:
        return True
    return count <= settings.LOGIN_SUCCESSES_PER_ADDRESS


def record_login_failure(request: Any, username: str | None) -> None:
    """Count a failed login. An unreachable cache is an error here (the caller answers
    503): guesses that nothing counts must not be checked either."""
    for key, _ in _counters(request, username):
        # Created with the window's lifetime, then incremented atomically.
        cache.add(key, 0, timeout=settings.LOGIN_FAILURE_WINDOW_SECONDS)
        try:
            cache.incr(key)
        except ValueError:  # expired in between: the next window's first failure
            cache.set(key, 1, timeout=settings.LOGIN_FAILURE_WINDOW_SECONDS)


class ThrottledModelBackend(ModelBackend):
    """Django's username and password check, not even tried while throttled; a
    success counts towards the client's rate of logins."""

    def authenticate(self, request: Any, username: str | None = None, password: str | None = None, **kwargs: Any) -> Any:
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        if login_retry_after(request, username) or login_rate_retry_after(request):
            # Stops authenticate() at once; it reports a failure (user_login_failed).
            raise PermissionDenied
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is not None and not record_login_success(request):
            raise PermissionDenied  # no session, no token: the rate holds for every login
        return user


@receiver(user_login_failed, dispatch_uid="accounts.login_throttle.count_failure")
def _count_failure(sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
    if login_rate_retry_after(request):
        # Refused for the client's rate of successful logins: no password was checked
        # or it was right, so this is no guess to count against the account.
        return
    record_login_failure(request, credentials.get(get_user_model().USERNAME_FIELD))
