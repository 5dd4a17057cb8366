"""Bearer tokens for the fast paths (core.fast_path): who a request's token names, read
from the token cache as BearerTokenAuthentication reads it, never from the database.

A handler gates its one Redis round trip on the token's cache entry (present, and not
the tombstone of a revocation) and checks the entry it got back with `holds`: the
full path's checks on a cached token (accounts.authentication), the same outcome. A
request the full path would answer otherwise (no entry, a tombstone, an inactive user,
an expired token, a header it would refuse) is handed to it.

The throttle and the channel's access are keyed by the user, which is inside the
entry: a token's user (and its expiry) never change, so each process remembers them
per token digest (OWNERS), learnt with one extra read the first time it sees a token.
Only the token's validity is read each time, with everything else.
"""

import functools
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from django.utils import timezone
from knox.crypto import hash_token
from knox.settings import knox_settings

from accounts.services import REVOKED, token_cache_key
from core.fast_path import REDIS_ERRORS, Fallback, Gate, cache_key, loaded, redis_client, redis_failed, stored

_PRINTABLE = re.compile(rb"[\x21-\x7e]+")
# How many tokens' owners a process remembers (a digest and a user id each, ~300 bytes).
OWNERS = 10_000
_owners: dict[str, tuple[Any, datetime | None]] = {}


@dataclass(frozen=True)
class Bearer:
    digest: str
    user_id: Any
    expiry: datetime | None

    @property
    def gate(self) -> Gate:
        """The entry must be there, and not a revocation's tombstone."""
        return Gate(token_cache_key(self.digest), "differ", _tombstone())

    def holds(self, raw_entry: bytes) -> bool:
        """Whether the full path would let this token in from this entry of the cache:
        a token of this user, unexpired, the user active (knox's validate_user)."""
        entry = loaded(raw_entry)
        if not isinstance(entry, dict):
            return False
        token, user = entry.get("token"), entry.get("user")
        if not isinstance(token, dict) or not isinstance(user, dict):
            return False
        expiry = token.get("expiry")
        return (
            token.get("user_id") == self.user_id
            and expiry == self.expiry
            and (expiry is None or not expiry < timezone.now())
            and user.get("is_active") is True
        )


@functools.cache
def _tombstone() -> bytes:
    return stored(REVOKED)


def bearer_digest(meta: dict[str, str]) -> str | None:
    """The digest of an `Authorization: Bearer <token>` header, read as knox and
    BearerTokenAuthentication read it; None for anything they would read otherwise or
    refuse (another scheme, no token, spaces, bytes that are not printable ASCII)."""
    value = meta.get("HTTP_AUTHORIZATION")
    if value is None:
        return None
    parts = value.encode("latin-1").split()  # DRF's get_authorization_header(request).split()
    if len(parts) != 2 or parts[0].lower() != knox_settings.AUTH_HEADER_PREFIX.encode().lower():
        return None
    token = parts[1]
    if _PRINTABLE.fullmatch(token) is None:
        return None
    return hash_token(token.decode("ascii"))


async def bearer(meta: dict[str, str]) -> Bearer | Fallback | None:
    """The request's bearer token and its owner; None when the fast path cannot tell
    (no such header, no cache entry, a tombstone), "unreachable" when Redis is away."""
    digest = bearer_digest(meta)
    if digest is None:
        return None
    owner = _owners.get(digest)
    if owner is None:
        try:
            raw = cast(bytes | None, await redis_client().call("GET", cache_key(token_cache_key(digest))))
        except REDIS_ERRORS as error:
            return redis_failed(error)
        if raw is None or raw == _tombstone():
            return None
        entry = loaded(raw)
        try:
            owner = (entry["token"]["user_id"], entry["token"]["expiry"])
        except (TypeError, KeyError):
            return None
        if len(_owners) >= OWNERS:
            _owners.pop(next(iter(_owners), ""), None)  # the oldest learnt
        _owners[digest] = owner
    return Bearer(digest, *owner)
