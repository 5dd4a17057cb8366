"""What a stream or a ticket was opened with: its credential, so that revoking the
credential ends them too (a password change, a token revoked).

A credential is named by an id, which is never a secret and cannot be turned into one:

- `token:<digest>`: a bearer token, by its knox digest (the SHA-512 of the token);
- `session:<id>`: a login session, by the random id accounts puts in it at login
  (SESSION_CREDENTIAL_KEY). Django changes a session's key when its user logs in
  again or changes their password (update_session_auth_hash); the id stays, so the
  session doing a password change keeps the streams it opened before. A session
  that has no id (logged in before there was one) is named by a hash of its key.

Whether a credential still holds is read from the database, with Django's auth and
knox only (realtime.auth.credential_holder): a token while its row exists and has
not expired; a session while its user's password is the one it was authenticated
with (its `password` stamp), or, for one ticket lifetime, the session that changed
the password (realtime.tickets.keep_credential), and until it logs out
(realtime.tickets.end_credential)."""

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone
from django.utils.crypto import salted_hmac

TOKEN = "token:"  # noqa: S105 - a prefix of ids, not a password
SESSION = "session:"
# In the session's data, set at login (accounts): the session's credential id.
SESSION_CREDENTIAL_KEY = "_credential_id"


@dataclass(frozen=True)
class Credential:
    id: str
    # A session's: the stamp of the password it was authenticated with (password_stamp).
    password: str = ""
    # A token's expiry: a stream it opened ends then (None: no expiry known).
    expires_at: datetime | None = None

    @property
    def is_token(self) -> bool:
        return self.id.startswith(TOKEN)

    @property
    def token_digest(self) -> str:
        return self.id.removeprefix(TOKEN)

    def seconds_left(self) -> float | None:
        """Until the credential expires (None: no expiry)."""
        if self.expires_at is None:
            return None
        return (self.expires_at - timezone.now()).total_seconds()


def token_credential_id(digest: str) -> str:
    return TOKEN + digest


def token_credential(auth_token: Any) -> Credential:
    """A knox AuthToken's credential."""
    return Credential(token_credential_id(auth_token.digest), expires_at=auth_token.expiry)


def password_stamp(user: Any) -> str:
    """Which password `user` has now, as a keyed digest of its hash: it changes with the
    password and tells nothing of it without the SECRET_KEY."""
    return salted_hmac("realtime.credentials.password", user.password, algorithm="sha256").hexdigest()[:32]


def session_credential_id(session: Any, *, session_key: str | None = None) -> str:
    """A session's credential id; `session_key`, the key it had when the request began
    (a password change gives it a new one), for a session without an id of its own."""
    own = session.get(SESSION_CREDENTIAL_KEY)
    if own:
        return SESSION + str(own)
    key = session_key or session.session_key or ""
    return SESSION + "key-" + hashlib.sha256(key.encode()).hexdigest()[:32]


def session_credential(session: Any, user: Any) -> Credential:
    """The credential of a session that has just authenticated `user` (its data loaded)."""
    return Credential(session_credential_id(session), password=password_stamp(user))


def request_credential(request: Any) -> Credential:
    """The credential a DRF request authenticated with: the bearer token (knox's
    AuthToken in request.auth) or else the session."""
    auth_token = getattr(request, "auth", None)
    if auth_token is not None and hasattr(auth_token, "digest"):
        return token_credential(auth_token)
    return session_credential(request.session, request.user)
