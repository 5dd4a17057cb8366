"""Who is on the other end of a stream: the session cookie, a single-use ticket
(`?ticket=`), or (for non-browser clients) a Bearer token. Never a user id the
client claims."""

from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest

from realtime.delivery import db_read
from realtime.tickets import ticket_redeem


@db_read
def user_for_ticket(ticket: str) -> Any:
    """The active user a single-use ticket was issued to, once; anonymous otherwise."""
    from django.contrib.auth import get_user_model

    user_id = ticket_redeem(ticket)
    if user_id is None:
        return AnonymousUser()
    return get_user_model().objects.filter(id=user_id, is_active=True).first() or AnonymousUser()


@db_read
def _user_for_bearer(token: str) -> Any:
    from rest_framework.exceptions import AuthenticationFailed

    from accounts.authentication import BearerTokenAuthentication

    try:
        user, _ = BearerTokenAuthentication().authenticate_credentials(token.encode())
    except AuthenticationFailed:
        return AnonymousUser()
    return user


async def stream_user(request: HttpRequest) -> Any:
    ticket = request.GET.get("ticket")
    if ticket:
        return await user_for_ticket(ticket)
    authorization = request.headers.get("Authorization", "")
    if authorization.lower().startswith("bearer "):
        return await _user_for_bearer(authorization[7:].strip())
    return await request.auser()
