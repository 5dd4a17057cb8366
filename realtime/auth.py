"""Who is on the other end of a stream: the session cookie, a single-use ticket
(`?ticket=`), or (for non-browser clients) a Bearer token. Never a user id the
client claims.

A Bearer token is checked by the token authentication DRF is configured with
(REST_FRAMEWORK's DEFAULT_AUTHENTICATION_CLASSES), so the streams accept exactly the
tokens the API accepts and realtime imports no app to know how.

Each also names the credential it authenticated with (realtime.credentials): a stream
records it, so that revoking the credential closes the stream, and checks it again
once attached to the hub, so that a revocation that came while it was opening is not
missed (credential_holder)."""

from collections.abc import Mapping
from dataclasses import replace
from hmac import compare_digest
from typing import Any, NamedTuple, cast

from django.contrib.auth.models import AnonymousUser
from django.http import HttpRequest
from django.utils import timezone

from core.cache import UNREACHABLE
from realtime.credentials import Credential, password_stamp, session_credential, token_credential, token_credential_id
from realtime.delivery import db_read
from realtime.tickets import ENDED, KEPT, SCOPE_KEY, Ticket, credential_note


class StreamCaller(NamedTuple):
    """Who opens a stream, and with which credential (None when anonymous)."""

    user: Any
    credential: Credential | None


ANONYMOUS = StreamCaller(AnonymousUser(), None)


def credential_holder_sync(user_id: Any, credential: Credential) -> StreamCaller | None:
    """The active user `credential` still authenticates, in one query; None if it was
    revoked, has expired, or (a session's) it logged out or the password it was
    authenticated with has changed since. A token's credential comes back with its
    expiry."""
    from django.contrib.auth import get_user_model
    from knox.models import AuthToken

    if credential.is_token:
        auth_token = (
            AuthToken.objects.select_related("user")
            .filter(digest=credential.token_digest, user_id=user_id, user__is_active=True)
            .first()
        )
        if auth_token is None or (auth_token.expiry is not None and auth_token.expiry <= timezone.now()):
            return None
        return StreamCaller(auth_token.user, replace(credential, expires_at=auth_token.expiry))
    user = get_user_model().objects.filter(id=user_id, is_active=True).first()
    if user is None or not credential.password:
        return None
    try:
        note = credential_note(credential.id)
    except UNREACHABLE:
        # A logout's own streams were closed by its message all the same; only its
        # tickets, and a stream that missed that message, go unrefused meanwhile.
        note = None
    if note == ENDED:
        return None
    current = password_stamp(user)
    if compare_digest(current, credential.password):
        return StreamCaller(user, credential)
    if note is not None and note.startswith(KEPT) and compare_digest(current, note.removeprefix(KEPT)):
        # The session that changed the password: its credential is the new password's now.
        return StreamCaller(user, replace(credential, password=current))
    return None


_credential_holder_db = db_read(credential_holder_sync)


async def credential_holder(user_id: Any, credential: Credential) -> StreamCaller | None:
    """credential_holder_sync, answered from the token cache when it says the token holds
    (no SQL, no thread: a subscribe asks this once or twice); anything else (a session,
    no entry, a tombstone, another user's token) is read from the database.

    Read after a stream is attached to the hub (so that a revocation from then on
    reaches it), to refuse a credential revoked before: see
    realtime.hub.StreamHub.attach. A revocation writes the token's tombstone on commit
    before it tells the streams (accounts.services.tokens_revoke), so an entry read
    here before the tombstone means the streams are told after this stream attached."""
    if credential.is_token:
        cached = await _cached_token(credential.token_digest)
        if cached is not None and str(cached.user.pk) == str(user_id):
            return StreamCaller(cached.user, replace(credential, expires_at=cached.expiry))
    return await _credential_holder_db(user_id, credential)


async def ticket_caller(scope: Mapping[str, Any]) -> StreamCaller | None:
    """The active user of the ticket the request came with (redeemed at the edge by
    realtime.tickets.TicketRedemptionMiddleware), with the credential that issued it;
    anonymous if the ticket was unknown, expired or used, or its credential no longer
    holds; None if it came with no ticket."""
    if SCOPE_KEY not in scope:
        return None
    outcome = scope[SCOPE_KEY]
    if isinstance(outcome, Exception):
        raise outcome
    if not isinstance(outcome, Ticket):
        return ANONYMOUS
    return await credential_holder(outcome.user_id, outcome.credential) or ANONYMOUS


def _token_authenticators() -> list[Any]:
    """The configured authentication classes that take a bare token (knox's
    TokenAuthentication and its subclasses), first one first."""
    from knox.auth import TokenAuthentication
    from rest_framework.authentication import BaseAuthentication
    from rest_framework.settings import api_settings

    # DRF's settings object imports the dotted names it is given: classes, not strings.
    classes = cast(list[type[BaseAuthentication]], api_settings.DEFAULT_AUTHENTICATION_CLASSES)
    return [cls() for cls in classes if issubclass(cls, TokenAuthentication)]


def _token_digest(token: str) -> str | None:
    """The digest knox stores of `token`; None for a token no authenticator could take
    (not encodable, a NUL), which the full path then refuses."""
    from knox.crypto import hash_token

    if not token or "\x00" in token:
        return None
    try:
        token.encode("utf-8")
        return hash_token(token)
    except (UnicodeError, TypeError, ValueError):
        return None


async def _cached_token(digest: str) -> Any:
    """What the first configured token authentication with a cache of its own
    (a `cached_token` coroutine: accounts.authentication) says of the token: its user
    and expiry when the cache says it holds, else None."""
    for authenticator in _token_authenticators():
        reader = getattr(authenticator, "cached_token", None)
        if reader is not None:
            return await reader(digest)
    return None


async def _bearer_caller(token: str) -> StreamCaller:
    """The caller of a Bearer token: from the token cache when it says the token holds,
    else as the API authenticates it (which refuses, or reads the database)."""
    digest = _token_digest(token)
    if digest is not None:
        cached = await _cached_token(digest)
        if cached is not None:
            return StreamCaller(cached.user, Credential(token_credential_id(digest), expires_at=cached.expiry))
    return await _bearer_caller_full(token)


@db_read
def _bearer_caller_full(token: str) -> StreamCaller:
    from rest_framework.exceptions import AuthenticationFailed

    for authenticator in _token_authenticators():
        try:
            user, auth_token = authenticator.authenticate_credentials(token.encode())
        except AuthenticationFailed:
            continue
        return StreamCaller(user, token_credential(auth_token))
    return ANONYMOUS


@db_read
def session_caller(session: Any, user: Any) -> StreamCaller:
    """The caller of a session that authenticated `user` (or did not: anonymous)."""
    if not user.is_authenticated:
        return ANONYMOUS
    return StreamCaller(user, session_credential(session, user))


async def stream_caller(request: HttpRequest) -> StreamCaller:
    """Who opens an SSE stream: a ticket, else a Bearer token, else the session."""
    caller = await ticket_caller(getattr(request, "scope", {}))
    if caller is not None:
        return caller
    authorization = request.headers.get("Authorization", "")
    if authorization.lower().startswith("bearer "):
        return await _bearer_caller(authorization[7:].strip())
    return await session_caller(request.session, await request.auser())
