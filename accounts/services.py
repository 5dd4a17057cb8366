"""Bearer tokens: issuing and revoking them. Tokens are also cached by digest for a short
time (accounts.authentication), so every revocation goes through here."""

from typing import Any

from django.core.cache import cache
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from knox.models import AuthToken

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


def tokens_revoke(tokens: QuerySet[AuthToken]) -> int:
    """Delete the tokens; once that commits, every process's cache refuses them too."""
    with transaction.atomic():
        digests = list(tokens.values_list("digest", flat=True))
        deleted, _ = AuthToken.objects.filter(digest__in=digests).delete()
        if digests:
            transaction.on_commit(
                lambda: cache.set_many({token_cache_key(d): REVOKED for d in digests}, TOKEN_CACHE_SECONDS),
                robust=True,
            )
    return deleted
