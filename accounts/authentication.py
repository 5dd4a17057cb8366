import binascii
from datetime import datetime
from hmac import compare_digest
from typing import TYPE_CHECKING, Any, NamedTuple

from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import post_delete
from django.dispatch import receiver
from django.utils import timezone
from knox.auth import TokenAuthentication
from knox.crypto import hash_token
from knox.models import AuthToken
from knox.settings import CONSTANTS
from knox.signals import token_expired
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import AuthenticationFailed

from accounts.services import REVOKED, TOKEN_CACHE_SECONDS, token_cache_key, tokens_revoke

if TYPE_CHECKING:
    # Not at run time: DRF imports this module while loading its own (DEFAULT_AUTHENTICATION_CLASSES).
    from rest_framework.request import Request

INVALID_TOKEN = "Invalid token."  # noqa: S105 - a message, not a password


# Token cache entries already read, by their bytes (an entry's bytes name its token,
# its user's row as cached and its expiry; a revocation replaces them with a tombstone).
READ_ENTRIES = 10_000
_read_entries: dict[bytes, "CachedToken"] = {}


class CachedToken(NamedTuple):
    """A token the cache says holds: its user (a row as loaded, the password deferred)
    and its expiry."""

    user: Any
    expiry: datetime | None


class BearerTokenAuthentication(TokenAuthentication):
    """`Authorization: Bearer <token>`; tokens are stored hashed by django-rest-knox.
    A 401 carries `WWW-Authenticate: Bearer` (the prefix is set in REST_KNOX).

    A polling client authenticates every few seconds, so a token that authenticated is
    kept in Redis under its digest for TOKEN_CACHE_SECONDS (at most until it expires):
    an unchanged poll then costs no SQL. Revocations (accounts.services.tokens_revoke)
    replace the entry with a tombstone on commit. Unlike knox, this does not load all of
    the user's tokens on every request to delete expired ones: an expired token is
    refused (and deleted) when presented, the others when the user next logs in.

    The cache keeps the token's and the user's column values, not pickled models, and
    never the password hash: whoever reads the cache gets no hashes to crack. The
    user comes back with `password` deferred (read from the database if ever used; a
    save() writes only the loaded fields)."""

    def authenticate_credentials(self, token: bytes) -> tuple[Any, AuthToken]:
        # A token is printable ASCII (knox's hex, after its optional prefix). Bytes that
        # are not UTF-8 (a 500 before), or a NUL, which PostgreSQL takes in no query, are
        # a wrong token like any other.
        try:
            text = token.decode("utf-8")
        except UnicodeDecodeError:
            raise AuthenticationFailed(INVALID_TOKEN) from None
        if "\x00" in text:
            raise AuthenticationFailed(INVALID_TOKEN)
        try:
            digest = hash_token(text)
        except (TypeError, binascii.Error):
            raise AuthenticationFailed(INVALID_TOKEN) from None
        key = token_cache_key(digest)
        cached = cache.get(key)
        if cached == REVOKED:
            raise AuthenticationFailed(INVALID_TOKEN)
        if isinstance(cached, dict):
            auth_token = _from_cache_entry(cached)
            if not _expired(auth_token):
                return self.validate_user(auth_token)
        auth_token = _stored_token(text, digest)
        user, auth_token = self.validate_user(auth_token)
        # add, never set: a revocation's tombstone written meanwhile must win.
        cache.add(key, _cache_entry(auth_token), _seconds_to_trust(auth_token))
        return user, auth_token

    async def cached_token(self, digest: str) -> CachedToken | None:
        """The token of `digest` as this class would let it in from its cache entry
        alone, read on the event loop in one round trip (the streams' subscribes, which
        realtime.auth finds here by this method's name); None when the cache does not
        say yes (no entry, a revocation's tombstone, an expired token, an inactive user,
        Redis away): the caller then asks the full path (authenticate_credentials, or
        the database), which gives every refusal its usual answer."""
        from core.fast_path import REDIS_ERRORS, cache_key, loaded, redis_client

        try:
            raw = await redis_client().call("GET", cache_key(token_cache_key(digest)))
        except REDIS_ERRORS:
            return None
        if raw is None:
            return None
        # A subscribe reads the same entry twice, a reconnect storm thousands of times:
        # the entry's bytes are unpickled and made rows of once.
        known = _read_entries.get(raw)
        if known is None:
            try:
                entry = loaded(raw)
                if not isinstance(entry, dict):
                    return None  # the tombstone
                auth_token = _from_cache_entry(entry)
            except Exception:  # noqa: BLE001 - an entry of another version: the full path reads the database
                return None
            if auth_token.digest != digest or not auth_token.user.is_active:
                return None
            known = CachedToken(auth_token.user, auth_token.expiry)
            if len(_read_entries) >= READ_ENTRIES:
                _read_entries.pop(next(iter(_read_entries)))  # the oldest read
            _read_entries[raw] = known
        if known.expiry is not None and known.expiry < timezone.now():
            return None
        return known


NOT_CACHED_USER_FIELDS = frozenset({"password"})


@receiver(post_delete, sender=AuthToken, dispatch_uid="accounts.authentication.forget_deleted_token")
def forget_deleted_token(sender: Any, instance: AuthToken, **kwargs: Any) -> None:
    """A token's row deleted any way at all (tokens_revoke, a logout, the admin, a
    queryset's delete()) is refused by the cache too: its entry goes now (a check in the
    transaction reads the database) and its tombstone is written on commit (so that no
    earlier read can add it back). The streams trust the cache's "yes" to open
    (realtime.auth.credential_holder), as the API does to answer."""
    key = token_cache_key(instance.digest)
    cache.delete(key)
    transaction.on_commit(lambda: cache.set(key, REVOKED, TOKEN_CACHE_SECONDS), robust=True)


def _cache_entry(auth_token: AuthToken) -> dict[str, dict[str, Any]]:
    user = auth_token.user
    return {
        "token": {f.attname: getattr(auth_token, f.attname) for f in AuthToken._meta.concrete_fields},
        "user": {
            f.attname: getattr(user, f.attname)
            for f in user._meta.concrete_fields
            if f.attname not in NOT_CACHED_USER_FIELDS
        },
    }


def _from_cache_entry(entry: dict[str, dict[str, Any]]) -> AuthToken:
    """The token and its user as rows loaded from the database (in field order, the
    fields not cached deferred)."""
    user_values = entry["user"]
    user = get_user_model().from_db("default", list(user_values), list(user_values.values()))
    token_values = entry["token"]
    auth_token = AuthToken.from_db("default", list(token_values), list(token_values.values()))
    auth_token.user = user
    return auth_token


def _expired(auth_token: AuthToken) -> bool:
    return auth_token.expiry is not None and auth_token.expiry < timezone.now()


def _seconds_to_trust(auth_token: AuthToken) -> int:
    if auth_token.expiry is None:
        return TOKEN_CACHE_SECONDS
    return max(1, min(TOKEN_CACHE_SECONDS, int((auth_token.expiry - timezone.now()).total_seconds())))


def _stored_token(token: str, digest: str) -> AuthToken:
    """The token's row (with its user), in one query; an expired one is deleted and refused."""
    for auth_token in AuthToken.objects.filter(token_key=token[: CONSTANTS.TOKEN_KEY_LENGTH]).select_related("user"):
        if not compare_digest(digest, auth_token.digest):
            continue
        if _expired(auth_token):
            tokens_revoke(AuthToken.objects.filter(digest=auth_token.digest))
            token_expired.send(sender=BearerTokenAuthentication, username=auth_token.user.get_username(), source="auth_token")
            break
        return auth_token
    raise AuthenticationFailed(INVALID_TOKEN)


class ReadOnlySessionAuthentication(SessionAuthentication):
    """The session cookie without the CSRF check, for POST endpoints that only read
    (batch lookups): the seed's VideoMetadataUpdater sends neither a token nor a
    CSRF token, and a forged cross-site read changes nothing."""

    def enforce_csrf(self, request: "Request") -> None:
        return None
