"""Who is on the other end of a stream: the session cookie, a single-use ticket
(`?ticket=`), or (for non-browser clients) a Bearer token. Never a user id the
client claims.

A Bearer token is checked by the token authentication DRF is configured with
(REST_FRAMEWORK's DEFAULT_AUTHENTICATION_CLASSES), so the streams accept exactly the
tokens the API accepts and realtime imports no app to know how."""

from collections.abc import Mapping
from typing import Any, cast

from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest

from realtime.delivery import db_read
from realtime.tickets import SCOPE_KEY


@db_read
def _active_user(user_id: str | None) -> Any:
    from django.contrib.auth import get_user_model

    if user_id is None:
        return AnonymousUser()
    return get_user_model().objects.filter(id=user_id, is_active=True).first() or AnonymousUser()


async def ticket_user(scope: Mapping[str, Any]) -> Any | None:
    """The active user of the ticket the request came with (redeemed at the edge by
    realtime.tickets.TicketRedemptionMiddleware), anonymous if the ticket was unknown,
    expired or used; None if it came with no ticket."""
    if SCOPE_KEY not in scope:
        return None
    outcome = scope[SCOPE_KEY]
    if isinstance(outcome, Exception):
        raise outcome
    return await _active_user(outcome)


def _token_authenticators() -> list[Any]:
    """The configured authentication classes that take a bare token (knox's
    TokenAuthentication and its subclasses), first one first."""
    from knox.auth import TokenAuthentication
    from rest_framework.authentication import BaseAuthentication
    from rest_framework.settings import api_settings

    # DRF's settings object imports the dotted names it is given: classes, not strings.
    classes = cast(list[type[BaseAuthentication]], api_settings.DEFAULT_AUTHENTICATION_CLASSES)
    return [cls() for cls in classes if issubclass(cls, TokenAuthentication)]


@db_read
def _user_for_bearer(token: str) -> Any:
    from rest_framework.exceptions import AuthenticationFailed

    for authenticator in _token_authenticators():
        try:
            user, _ = authenticator.authenticate_credentials(token.encode())
        except AuthenticationFailed:
            continue
        return user
    return AnonymousUser()


async def stream_user(request: HttpRequest) -> Any:
    user = await ticket_user(getattr(request, "scope", {}))
    if user is not None:
        return user
    authorization = request.headers.get("Authorization", "")
    if authorization.lower().startswith("bearer "):
        return await _user_for_bearer(authorization[7:].strip())
    return await request.auser()
