"""Password guessing: failed logins are counted per account and per client address,
and while either count is over its limit no password is checked for them.

Every password check goes through Django's `authenticate()`: the token endpoint, the
login page and the admin's. The backend below refuses while throttled, and
`user_login_failed` (sent by `authenticate()` for every failure, the refused ones
included) counts. A successful login counts nothing, so many people behind one
address (an office) are never throttled for logging in, while one account cannot be
guessed at from many addresses, nor many accounts from one.

The counts live in the cache (Redis), in fixed windows of LOGIN_FAILURE_WINDOW_SECONDS:
a guesser gets at most twice a limit around a window's edge, and the wait to announce
is the rest of the window. The address is core.client.client_identity (the socket's
peer, or what our own trusted proxies forwarded, never a header a client chose; an
IPv6 address counts as its /CLIENT_IPV6_PREFIX network).
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

from core.client import client_identity


class LoginThrottled(Throttled):
    default_detail = "Too many failed logins for this account or from this address."
    extra_detail_singular = "Try again in {wait} second."
    extra_detail_plural = "Try again in {wait} seconds."


def _window() -> tuple[int, int]:
    """The current window's number and the seconds left in it."""
    length = settings.LOGIN_FAILURE_WINDOW_SECONDS
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
    again; 0 if it may be now."""
    counters = _counters(request, username)
    counts = cache.get_many([key for key, _ in counters])
    if any(counts.get(key, 0) >= limit for key, limit in counters):
        return _window()[1]
    return 0


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
    """Django's username and password check, not even tried while throttled."""

    def authenticate(self, request: Any, username: str | None = None, password: str | None = None, **kwargs: Any) -> Any:
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        if login_retry_after(request, username):
            # Stops authenticate() at once; it reports a failure (user_login_failed).
            raise PermissionDenied
        return super().authenticate(request, username=username, password=password, **kwargs)


@receiver(user_login_failed, dispatch_uid="accounts.login_throttle.count_failure")
def _count_failure(sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any) -> None:
    record_login_failure(request, credentials.get(get_user_model().USERNAME_FIELD))
