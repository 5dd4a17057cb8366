"""Which credential a request is using, for the one thing that must know it: a password
change spares the credential that makes it (accounts.models.User.save). Streams and
tickets name their credentials as realtime.credentials does; this names the request's.
A session that logs out ends its streams and tickets (end_the_session).

A session gets a credential id of its own at login (realtime.credentials.
SESSION_CREDENTIAL_KEY). Django changes the session's key when the password changes
(update_session_auth_hash), after the view saved the user; the id stays with it, so
the session's streams, opened under the old key, are kept. A session from before
there were ids is named by its key as the request began, which this middleware notes."""

import logging
import secrets
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse
from knox.models import AuthToken

from realtime.credentials import SESSION_CREDENTIAL_KEY, session_credential_id, token_credential_id


@dataclass(frozen=True)
class _InUse:
    request: HttpRequest
    # The session's key as the request began, before a password change replaced it.
    session_key: str | None


logger = logging.getLogger(__name__)

_in_use: ContextVar[_InUse | None] = ContextVar("accounts_credential_in_use", default=None)


class CredentialInUseMiddleware:
    """Notes the request, and its session's key as it arrived, for credential_in_use().
    After the session middleware; it reads only the cookie (no query)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        session = getattr(request, "session", None)
        noted = _in_use.set(_InUse(request, session.session_key if session is not None else None))
        try:
            return self.get_response(request)
        finally:
            _in_use.reset(noted)


def credential_in_use(user: Any) -> str | None:
    """The id of the credential this request authenticated `user` with (their bearer
    token, or their session); None outside a request (`manage.py changepassword`, a
    shell, a worker) or when the request is someone else's (a staff user setting
    another user's password, an anonymous password reset)."""
    in_use = _in_use.get()
    if in_use is None:
        return None
    request = in_use.request
    # DRF puts what it authenticated on the Django request too.
    auth = getattr(request, "auth", None)
    if isinstance(auth, AuthToken):
        return token_credential_id(auth.digest) if auth.user_id == user.pk else None
    session = getattr(request, "session", None)
    current = getattr(request, "user", None)
    if session is None or current is None or not current.is_authenticated or current.pk != user.pk:
        return None
    return session_credential_id(session, session_key=in_use.session_key)


@receiver(user_logged_in, dispatch_uid="accounts.credentials.name_the_session")
def name_the_session(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    """A logged-in session gets a credential id that its key changes do not change
    (kept when the same user logs in again in it)."""
    session = getattr(request, "session", None)
    if session is not None and not session.get(SESSION_CREDENTIAL_KEY):
        session[SESSION_CREDENTIAL_KEY] = secrets.token_hex(16)


@receiver(user_logged_out, dispatch_uid="accounts.credentials.end_the_session")
def end_the_session(sender: Any, request: HttpRequest | None, user: Any, **kwargs: Any) -> None:
    """A session that logs out ends what it opened: its open streams close and the
    tickets it issued are refused (Django sends this before it empties the session)."""
    session = getattr(request, "session", None)
    if session is None or user is None:
        return
    from core.cache import UNREACHABLE  # see accounts.services.tokens_revoke
    from realtime.streams import revoke_credentials
    from realtime.tickets import end_credential

    credential = session_credential_id(session)
    try:
        end_credential(credential)
    except UNREACHABLE as error:
        logger.warning("Could not note the logout of a session of %s: %s", user.pk, error)
    revoke_credentials(user.pk, only=[credential])
