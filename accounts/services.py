"""Bearer tokens: issuing and revoking them. Tokens are also cached by digest for a short
time (accounts.authentication), so every revocation goes through here; a revocation
also closes the streams the tokens opened and refuses the tickets they issued
(realtime.credentials).

A password change or reset revokes every credential of the user but the one making
it (credentials_revoke_for_password_change, called by User.save)."""

import logging
import uuid
from collections import defaultdict
from typing import Any

from django.core.cache import cache
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from knox.models import AuthToken

from realtime.credentials import TOKEN, password_stamp, token_credential_id

logger = logging.getLogger(__name__)

# How long a token that authenticated stays trusted from Redis without the database.
# Revocations through tokens_revoke() end it at once; this bounds what cannot call it
# (a user deactivated in the admin without revoking, a lost Redis write).
TOKEN_CACHE_SECONDS = 30
# Cached in place of a revoked token: a request that read the token from the database
# just before the revocation committed cannot put it back (readers only `add`).
REVOKED = "revoked"


def token_cache_key(digest: str) -> str:
    return f"auth:token:{digest}"


def token_issue(*, user: Any) -> tuple[AuthToken, str]:
    """A new token for `user`. Their expired tokens go now: authentication no longer
    loads all of a user's tokens on every request to clean them up."""
    AuthToken.objects.filter(user=user, expiry__lt=timezone.now()).delete()
    return AuthToken.objects.create(user=user)


def tokens_revoke(tokens: QuerySet[AuthToken], *, close_streams: bool = True) -> int:
    """Delete the tokens; once that commits, every process's cache refuses them too,
    and (unless the caller closes them itself) the streams they opened are closed.
    Their unspent tickets are refused from the commit on: a ticket opens a stream only
    while the token that issued it has its row (realtime.auth.credential_holder)."""
    with transaction.atomic():
        rows = list(tokens.values_list("digest", "user_id"))
        digests = [digest for digest, _ in rows]
        deleted, _ = AuthToken.objects.filter(digest__in=digests).delete()
        if digests:
            # The tombstones first: a stream opening meanwhile that missed the close
            # below checks its token once attached, and must find it revoked.
            transaction.on_commit(
                lambda: cache.set_many({token_cache_key(d): REVOKED for d in digests}, TOKEN_CACHE_SECONDS),
                robust=True,
            )
        if close_streams:
            # Here, not at the top: DRF imports this module (through accounts.authentication)
            # while loading its settings, and realtime.streams (and core.cache) import DRF.
            from realtime.streams import revoke_credentials

            by_user: dict[Any, list[str]] = defaultdict(list)
            for digest, user_id in rows:
                by_user[user_id].append(token_credential_id(digest))
            for user_id, credentials in by_user.items():
                revoke_credentials(user_id, only=credentials)
    return deleted


def credentials_revoke_for_password_change(user: Any, *, keep: str | None) -> None:
    """`user`'s password has just changed (or been reset, or made unusable): every
    credential of theirs dies but `keep` (realtime.credentials' id of the one that
    changed it, if it is the user's own). Their tokens are revoked, their open streams
    closed and their unspent tickets refused; other sessions end by Django's session
    auth hash, which the password is part of. The session that made the change keeps
    its streams and, for a ticket's lifetime, its unspent tickets."""
    from core.cache import UNREACHABLE  # see tokens_revoke
    from realtime.streams import revoke_credentials
    from realtime.tickets import keep_credential

    with transaction.atomic():
        tokens = AuthToken.objects.filter(user=user)
        if keep is not None and keep.startswith(TOKEN):
            tokens = tokens.exclude(digest=keep.removeprefix(TOKEN))
        tokens_revoke(tokens, close_streams=False)
        revoke_credentials(user.pk, keep=keep)
    if keep is not None and not keep.startswith(TOKEN):
        try:
            keep_credential(keep, password_stamp(user))
        except UNREACHABLE as error:
            # Only its tickets issued before the change are refused; it issues new ones.
            logger.warning("Could not keep the tickets of the session that changed %s's password: %s", user.pk, error)


# --- A user's tokens, by an id that is not the secret ----------------------------------
#
# The id is the first 128 bits of the token's digest (the SHA-512 of the token, which
# knox stores) written as a UUID: it names the token to its owner, and neither it nor
# the digest can be turned back into the token.


def token_public_id(digest: str) -> uuid.UUID:
    return uuid.UUID(hex=digest[:32])


def tokens_of(user: Any) -> QuerySet[AuthToken]:
    """The user's tokens that have not expired."""
    return AuthToken.objects.filter(user=user).filter(Q(expiry__isnull=True) | Q(expiry__gt=timezone.now()))


def token_revoke_by_id(*, user: Any, token_id: uuid.UUID) -> bool:
    """Revoke the user's token with this id; False if the user has none (another
    user's token is one they do not have)."""
    matching = AuthToken.objects.filter(user=user, digest__startswith=token_id.hex)
    return tokens_revoke(matching) > 0
