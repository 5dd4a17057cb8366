"""Credentials that die together (issue 17, items 3 and 6).

A password change or reset (the page, the admin's password form, `manage.py
changepassword`, a reset link) revokes every credential of the user but the session
doing it: bearer tokens answer 401, tickets they issued are refused, open SSE and
WebSocket streams close; the changing session keeps working and keeps its streams.
`DELETE /v1/auth/token` ends what that token opened and issued, and nothing else. A
user lists their tokens and revokes one of the others. Tokens expire by default.

Through a real daphne wherever a stream is involved, as a client would reach it."""

import asyncio
import re
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.contrib.auth.tokens import default_token_generator
from django.contrib.sessions.backends.db import SessionStore
from django.core.management import call_command
from django.db import transaction
from django.test import Client
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from knox.crypto import hash_token
from knox.models import AuthToken
from rest_framework.test import APIClient

from accounts.services import token_public_id
from contents.services import channel_create
from realtime.credentials import session_credential
from realtime.hub import StreamHub, get_hub
from realtime.sse import sse_response
from realtime.streams import channel_stream, publish, user_stream
from realtime.user_consumer import UserEventsConsumer
from tests.helpers import make_user
from tests.live import Daphne
from tests.stream_clients import SSECollector, WSCollector, status_of, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

NEW_PASSWORD = "a-new-password-17"


@pytest.fixture
def server() -> Iterator[Daphne]:
    daphne = Daphne()
    yield daphne
    daphne.close()


class Bearer:
    """A client with one bearer token of `user`, against the live server."""

    def __init__(self, server: Daphne, user: Any, **token_options: Any) -> None:
        self.server = server
        self.auth_token, self.token = AuthToken.objects.create(user=user, **token_options)
        self.headers = {"Authorization": f"Bearer {self.token}"}

    def me(self) -> int:
        return httpx.get(self.server.url("/v1/auth/me"), headers=self.headers, timeout=10).status_code

    def ticket(self) -> str:
        response = httpx.post(self.server.url("/v1/realtime/tickets"), headers=self.headers, timeout=10)
        assert response.status_code == 201, response.text
        return str(response.json()["ticket"])

    def user_socket(self) -> WSCollector:
        return WSCollector(
            self.server.ws_url(f"/v1/ws?ticket={self.ticket()}"), origin=self.server.origin, subscribe={"type": "subscribe"}
        )

    def channel_sse(self, channel: Any) -> SSECollector:
        return SSECollector(self.server.url(f"/api/contents/{channel.id}/events"), headers=self.headers)


class Browser:
    """A browser session on the live server: logs in on the login page and posts forms
    with their CSRF token, as a person would."""

    def __init__(self, server: Daphne) -> None:
        self.server = server
        self.http = httpx.Client(base_url=server.url(""), timeout=10)

    def form(self, path: str, data: dict[str, str]) -> httpx.Response:
        page = self.http.get(path)
        assert page.status_code == 200, (path, page.status_code)
        match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert match, page.text[:500]
        return self.http.post(path, data={"csrfmiddlewaretoken": match.group(1), **data})

    def log_in(self, username: str, password: str, *, path: str = "/accounts/login/") -> "Browser":
        answer = self.form(path, {"username": username, "password": password})
        assert answer.status_code == 302, answer.text[:500]
        return self

    def change_password(self, old: str, new: str) -> httpx.Response:
        return self.form(
            "/accounts/password_change/", {"old_password": old, "new_password1": new, "new_password2": new}
        )

    @property
    def cookie(self) -> dict[str, str]:
        return {"Cookie": f"sessionid={self.http.cookies['sessionid']}"}

    def me(self) -> int:
        return self.http.get("/v1/auth/me").status_code

    def ticket(self) -> str:
        response = self.http.post("/v1/realtime/tickets", headers={"X-CSRFToken": self.http.cookies["csrftoken"]})
        assert response.status_code == 201, response.text
        return str(response.json()["ticket"])

    def user_socket(self) -> WSCollector:
        return WSCollector(
            self.server.ws_url("/v1/ws"), origin=self.server.origin, subscribe={"type": "subscribe"}, headers=self.cookie
        )

    def channel_sse(self, channel: Any) -> SSECollector:
        return SSECollector(self.server.url(f"/api/contents/{channel.id}/events"), headers=self.cookie)

    def close(self) -> None:
        self.http.close()


def notify(user: Any, channel: Any, marker: str) -> None:
    """An event on the user's own stream and one on their channel's."""
    with transaction.atomic():
        publish(user_stream(user.id), "notification", {"marker": marker})
        publish(channel_stream(channel.id), "content_status_update", {"marker": marker})


def markers(collector: SSECollector | WSCollector) -> list[str]:
    return [event["marker"] for event in collector.events if "marker" in event]


def ended(*collectors: SSECollector | WSCollector, within: float = 5) -> bool:
    return wait_for(lambda: all(c.ended is not None for c in collectors), timeout=within)


def events_url(server: Daphne, channel: Any) -> str:
    return server.url(f"/api/contents/{channel.id}/events")


# --- A password change revokes everything but the session doing it -----------------------


def test_a_password_changed_on_the_page_revokes_tokens_tickets_streams_and_other_sessions_but_not_its_own(server):
    user = make_user("changer")
    channel = channel_create(owner=user, name="mine")
    bearer = Bearer(server, user)
    changing = Browser(server).log_in("changer", "pw-changer")
    elsewhere = Browser(server).log_in("changer", "pw-changer")

    token_socket, token_sse = bearer.user_socket(), bearer.channel_sse(channel)
    own_socket, own_sse = changing.user_socket(), changing.channel_sse(channel)
    elsewhere_sse = elsewhere.channel_sse(channel)
    token_ticket, own_ticket, elsewhere_ticket = bearer.ticket(), changing.ticket(), elsewhere.ticket()

    answer = changing.change_password("pw-changer", NEW_PASSWORD)
    assert answer.status_code == 302 and answer.headers["Location"].endswith("/password_change/done/")

    # What the token opened and the other session's stream end at once.
    assert ended(token_socket, token_sse, elsewhere_sse), (token_socket.ended, token_sse.ended, elsewhere_sse.ended)
    assert token_socket.close_code == 4401
    assert [m.get("code") for m in token_socket.messages if m.get("type") == "error"] == ["credentials_revoked"]
    assert token_sse.ended == elsewhere_sse.ended == "closed by the server"
    # The token, its ticket and the other session are refused.
    assert bearer.me() == 401
    assert status_of(events_url(server, channel), params={"ticket": token_ticket}) == 401
    assert status_of(events_url(server, channel), params={"ticket": elsewhere_ticket}) == 401
    assert elsewhere.me() == 401
    assert elsewhere.http.get("/accounts/password_change/").status_code == 302  # to the login page

    # The session that changed it keeps working, its streams open and delivering.
    notify(user, channel, "after the change")
    assert wait_for(lambda: markers(own_socket) == ["after the change"] and markers(own_sse) == ["after the change"], timeout=5), (
        own_socket.messages, own_sse.events, own_socket.ended, own_sse.ended
    )
    assert own_socket.ended is None and own_sse.ended is None
    assert changing.me() == 200
    assert status_of(events_url(server, channel), params={"ticket": own_ticket}) == 200
    assert status_of(events_url(server, channel), params={"ticket": changing.ticket()}) == 200
    # The new password works; a token issued now does too.
    assert Bearer(server, get_user_model().objects.get(id=user.id)).me() == 200
    for collector in (own_socket, own_sse):
        collector.close()


def test_manage_py_changepassword_revokes_every_credential(server, monkeypatch):
    """No request: nothing is kept, the sessions' streams close too."""
    user = make_user("forgetful")
    channel = channel_create(owner=user, name="mine")
    bearer = Bearer(server, user)
    browser = Browser(server).log_in("forgetful", "pw-forgetful")
    token_socket, session_sse, session_socket = bearer.user_socket(), browser.channel_sse(channel), browser.user_socket()
    token_ticket = bearer.ticket()

    monkeypatch.setattr("getpass.getpass", lambda prompt="": NEW_PASSWORD)
    call_command("changepassword", "forgetful")

    assert ended(token_socket, session_sse, session_socket)
    assert token_socket.close_code == session_socket.close_code == 4401
    assert bearer.me() == 401 and browser.me() == 401
    assert status_of(events_url(server, channel), params={"ticket": token_ticket}) == 401


def test_the_admins_password_form_revokes_the_users_credentials_and_not_the_admins(server):
    user = make_user("target")
    channel = channel_create(owner=user, name="mine")
    get_user_model().objects.create_superuser("root", password="pw-root-admin")
    target = Bearer(server, user)
    target_session = Browser(server).log_in("target", "pw-target")
    token_socket, session_socket = target.user_socket(), target_session.user_socket()
    token_ticket = target.ticket()
    admin = Browser(server).log_in("root", "pw-root-admin", path="/admin/login/")

    answer = admin.form(
        f"/admin/accounts/user/{user.id}/password/",
        {"usable_password": "true", "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )
    assert answer.status_code == 302 and answer.headers["Location"].endswith(f"/{user.id}/change/"), answer.text[:1000]

    assert ended(token_socket, session_socket)
    assert token_socket.close_code == session_socket.close_code == 4401
    assert target.me() == 401 and target_session.me() == 401
    assert status_of(events_url(server, channel), params={"ticket": token_ticket}) == 401
    assert admin.me() == 200


def test_the_admin_making_a_password_unusable_revokes_the_users_tokens(server):
    user = make_user("disabled")
    get_user_model().objects.create_superuser("root", password="pw-root-admin")
    target = Bearer(server, user)
    admin = Browser(server).log_in("root", "pw-root-admin", path="/admin/login/")
    # The admin's "Disable password-based authentication" button.
    answer = admin.form(f"/admin/accounts/user/{user.id}/password/", {"usable_password": "false", "unset-password": "1"})
    assert answer.status_code == 302 and answer.headers["Location"].endswith(f"/{user.id}/change/"), answer.text[:1000]
    assert not get_user_model().objects.get(id=user.id).has_usable_password()
    assert target.me() == 401


def test_a_password_reset_revokes_the_users_tokens_and_streams(server):
    user = make_user("reset")
    bearer = Bearer(server, user)
    socket = bearer.user_socket()
    browser = Client()
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    link = browser.get(f"/accounts/reset/{uid}/{default_token_generator.make_token(user)}/")
    assert link.status_code == 302
    done = browser.post(link["Location"], {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done.status_code == 302 and done["Location"].endswith("/reset/done/")

    assert ended(socket)
    assert socket.close_code == 4401
    assert bearer.me() == 401


def test_a_hash_upgraded_at_login_is_not_a_password_change(server, settings):
    """check_password() rehashes a password whose hasher changed; that revokes nothing."""
    user = make_user("upgraded")
    bearer = Bearer(server, user)
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher", *settings.PASSWORD_HASHERS]
    assert get_user_model().objects.get(id=user.id).check_password("pw-upgraded")
    assert get_user_model().objects.get(id=user.id).password.startswith("pbkdf2_sha256$")
    assert bearer.me() == 200


def test_a_stream_opening_while_the_password_changes_is_refused_once_attached(monkeypatch):
    """A stream authenticated just before a password change committed, and attached to
    its process's hub just after the close went out, would never hear of it: it checks
    its credential again once attached. Here the password changes (without any close
    message) while the socket is being attached."""
    user = make_user("racing")
    session = SessionStore()
    attach = StreamHub.attach

    async def attach_during_a_password_change(self, *args, **kwargs):
        subscription = await attach(self, *args, **kwargs)
        await asyncio.to_thread(
            lambda: get_user_model().objects.filter(id=user.id).update(password=make_password(NEW_PASSWORD))
        )
        return subscription

    monkeypatch.setattr(StreamHub, "attach", attach_during_a_password_change)

    async def connect() -> list[dict]:
        communicator = WebsocketCommunicator(UserEventsConsumer.as_asgi(), "/v1/ws")
        communicator.scope["user"] = user  # type: ignore[typeddict-unknown-key]  # what the auth middleware adds
        communicator.scope["session"] = session  # type: ignore[typeddict-unknown-key]  # as "user"
        connected, _ = await communicator.connect()
        assert connected
        output = [await communicator.receive_output(timeout=5), await communicator.receive_output(timeout=5)]
        await communicator.disconnect()
        return output

    error, close = asyncio.run(connect())
    assert '"credentials_revoked"' in error["text"]
    assert close == {"type": "websocket.close", "code": 4401}

    # An SSE stream likewise: a 401 instead of the stream, its place in the hub given back.
    user.refresh_from_db()
    credential = session_credential(session, user)

    async def open_sse() -> tuple[int, int]:
        response = await sse_response("channel:racing", user_id=str(user.id), last_event_id=None, named=False, credential=credential)
        return response.status_code, len(get_hub().by_user.get(str(user.id), ()))

    assert asyncio.run(open_sse()) == (401, 0)


# --- DELETE /v1/auth/token ends what the token opened and issued ---------------------------


def test_revoking_a_token_closes_its_streams_and_refuses_its_tickets_and_nothing_else(server):
    user = make_user("two-devices")
    channel = channel_create(owner=user, name="mine")
    phone, laptop = Bearer(server, user), Bearer(server, user)
    phone_socket, phone_sse, laptop_socket = phone.user_socket(), phone.channel_sse(channel), laptop.user_socket()
    phone_ticket, laptop_ticket = phone.ticket(), laptop.ticket()

    assert httpx.delete(server.url("/v1/auth/token"), headers=phone.headers, timeout=10).status_code == 204

    assert ended(phone_socket, phone_sse), (phone_socket.ended, phone_sse.ended)
    assert phone_socket.close_code == 4401
    assert status_of(events_url(server, channel), params={"ticket": phone_ticket}) == 401
    assert phone.me() == 401
    # The other token's stream is untouched and delivers.
    notify(user, channel, "still here")
    assert wait_for(lambda: markers(laptop_socket) == ["still here"], timeout=5), laptop_socket.messages
    assert laptop_socket.ended is None
    assert status_of(events_url(server, channel), params={"ticket": laptop_ticket}) == 200
    laptop_socket.close()


def test_a_ticket_whose_token_was_revoked_without_any_message_is_refused(server):
    """The refusal is read from the token's row at redemption, not only pushed."""
    user = make_user("silent")
    channel = channel_create(owner=user, name="mine")
    bearer = Bearer(server, user)
    sse_ticket, ws_ticket = bearer.ticket(), bearer.ticket()
    AuthToken.objects.filter(digest=bearer.auth_token.digest).delete()

    assert status_of(events_url(server, channel), params={"ticket": sse_ticket}) == 401
    late = WSCollector(server.ws_url(f"/v1/ws?ticket={ws_ticket}"), origin=server.origin, subscribe={"type": "subscribe"})
    assert ended(late) and late.close_code == 4401


def test_a_token_ends_its_stream_when_it_expires(server):
    user = make_user("short-lived")
    bearer = Bearer(server, user, expiry=timedelta(seconds=4))
    assert bearer.me() == 200  # and cached: the cache keeps it no longer than its expiry
    socket = bearer.user_socket()
    opened = time.monotonic()
    assert ended(socket, within=10)
    assert socket.close_code == 4401 and time.monotonic() - opened < 6
    assert bearer.me() == 401


# --- A user's tokens: listed, and one revoked from another --------------------------------


def token_client(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_a_user_lists_their_tokens_without_their_secrets_and_revokes_another_one():
    user = make_user("lister")
    _, current = AuthToken.objects.create(user=user)
    _, lost = AuthToken.objects.create(user=user)
    _, expired = AuthToken.objects.create(user=user, expiry=timedelta(seconds=-1))
    AuthToken.objects.create(user=make_user("someone-else"))
    api = token_client(current)

    listed = api.get("/v1/auth/tokens")
    assert listed.status_code == 200
    body = listed.json()
    entries = {entry["id"]: entry for entry in body["results"]}
    current_id, lost_id = str(token_public_id(hash_token(current))), str(token_public_id(hash_token(lost)))
    assert set(entries) == {current_id, lost_id}, "mine only, and not the expired one"
    assert entries[current_id]["current"] is True and entries[lost_id]["current"] is False
    assert set(entries[lost_id]) == {"id", "created_at", "expiry", "current"}
    for secret in (current, lost, expired, hash_token(current), hash_token(lost)):
        assert secret not in listed.content.decode()

    assert api.delete(f"/v1/auth/tokens/{lost_id}").status_code == 204
    assert token_client(lost).get("/v1/auth/me").status_code == 401
    assert api.get("/v1/auth/me").status_code == 200
    assert api.delete(f"/v1/auth/tokens/{lost_id}").status_code == 404
    assert [entry["id"] for entry in api.get("/v1/auth/tokens").json()["results"]] == [current_id]


def test_another_users_token_id_is_answered_as_a_missing_one():
    mine, _ = AuthToken.objects.create(user=make_user("me"))
    _, theirs = AuthToken.objects.create(user=make_user("them"))
    _, my_token = AuthToken.objects.create(user=mine.user)
    api = token_client(my_token)
    their_answer = api.delete(f"/v1/auth/tokens/{token_public_id(hash_token(theirs))}")
    missing_answer = api.delete("/v1/auth/tokens/00000000-0000-4000-8000-000000000000")
    assert their_answer.status_code == missing_answer.status_code == 404
    assert their_answer.json()["detail"] == missing_answer.json()["detail"]
    assert token_client(theirs).get("/v1/auth/me").status_code == 200


def test_the_token_list_takes_no_session_cookie():
    """Bearer only, as DELETE /v1/auth/token: a session cookie makes no CSRF target of it."""
    user = make_user("cookie")
    AuthToken.objects.create(user=user)
    browser = Client()
    browser.force_login(user)
    assert browser.get("/v1/auth/tokens").status_code == 401
    token_id = token_public_id(AuthToken.objects.get(user=user).digest)
    assert browser.delete(f"/v1/auth/tokens/{token_id}").status_code == 401
    assert AuthToken.objects.filter(user=user).count() == 1


# --- Tokens expire by default --------------------------------------------------------------


def test_a_token_expires_after_thirty_days_by_default_and_never_with_a_ttl_of_zero(settings):
    user = make_user("ttl")
    issued = APIClient().post("/v1/auth/token", {"username": "ttl", "password": "pw-ttl"}, format="json")
    assert issued.status_code == 201
    expiry = AuthToken.objects.get(digest=hash_token(issued.json()["token"])).expiry
    assert expiry is not None and abs(expiry - (timezone.now() + timedelta(days=30))) < timedelta(minutes=1)
    assert issued.json()["expiry"] is not None

    settings.REST_KNOX = {**settings.REST_KNOX, "TOKEN_TTL": None}  # what TOKEN_TTL_HOURS=0 gives
    forever = APIClient().post("/v1/auth/token", {"username": "ttl", "password": "pw-ttl"}, format="json")
    assert forever.json()["expiry"] is None
    assert AuthToken.objects.filter(user=user, expiry__isnull=True).count() == 1


# --- A logout ends what its session opened --------------------------------------------------


def test_logging_out_closes_the_sessions_streams_and_refuses_its_tickets_and_no_other_sessions(server):
    user = make_user("leaving")
    channel = channel_create(owner=user, name="mine")
    leaving, staying = Browser(server).log_in("leaving", "pw-leaving"), Browser(server).log_in("leaving", "pw-leaving")
    leaving_socket, leaving_sse, staying_socket = leaving.user_socket(), leaving.channel_sse(channel), staying.user_socket()
    leaving_ticket = leaving.ticket()

    logout = leaving.http.post("/accounts/logout/", data={"csrfmiddlewaretoken": leaving.http.cookies["csrftoken"]})
    assert logout.status_code == 302

    assert ended(leaving_socket, leaving_sse), (leaving_socket.ended, leaving_sse.ended)
    assert leaving_socket.close_code == 4401
    assert status_of(events_url(server, channel), params={"ticket": leaving_ticket}) == 401
    notify(user, channel, "still here")
    assert wait_for(lambda: markers(staying_socket) == ["still here"], timeout=5), staying_socket.messages
    assert staying_socket.ended is None and staying.me() == 200
    staying_socket.close()
