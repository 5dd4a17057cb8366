"""Object-level authorisation, as a matrix: for every input of the API that takes an
id (REST paths, batch and create bodies, the SSE stream, the WebSockets' paths and
subscribe messages, the HTML pages), another user's id gets exactly the answer a
missing id gets: status, headers (but the date and request id), body with its
problem type, stream messages and close codes. Nobody learns what exists behind
ids they may not see.

The inputs are enumerated from the OpenAPI schema, the URL resolver and the
WebSocket router (tests/authz.py): an endpoint added without a row here fails
test_every_id_taking_input_is_in_the_matrix. Everything goes through a real daphne
serving the test database, as a client would reach it."""

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from django.core.management import call_command
from django.test import Client
from knox.crypto import hash_token

from accounts.services import token_public_id
from tests.authz import (
    Caller,
    Probe,
    batch,
    body,
    channel_socket,
    channel_socket_claiming,
    id_inputs_in_schema,
    id_inputs_of_websockets,
    id_routes_in_urlconf,
    own_socket_as,
    remove_a_member,
    rest,
    sse,
    their_channel_socket_as,
    their_member,
    upload_remix,
)
from tests.live import Daphne
from tests.seeded import World, missing_id, seed_world

# The rows are committed once for the module (daphne reads them from its own
# connections); each test's own transaction stays empty.
pytestmark = pytest.mark.django_db

# Routes with an id in the path that are not the API's, and why they are not probed.
NOT_PROBED = {
    "/admin/": "the Django admin: staff only, and staff see every row by design",
    "/django-rq/": "the queue dashboard: staff only; its ids are queue indexes and RQ job ids",
    "/accounts/reset/": "password reset: the path carries a signed token, not the id of a row",
    "/^media/": "stored files, named by the server (videos.media); served by core.media",
}


MATRIX = [
    # Channels and their contents: another user's channel is one I am not a member of.
    Probe(("POST", "/api/channels/{channel_id}/members", "path:channel_id"),
          lambda caller, id_: caller.rest("POST", f"/api/channels/{id_}/members", id_, json={"user_ids": []}),
          theirs=lambda w: w.other.channel.id, own=lambda w: w.me.channel.id),
    # A user id (issue 11 item 8): any id is added alike, so the answer tells nothing of it.
    Probe(("POST", "/api/channels/{channel_id}/members", "body:user_ids"),
          lambda caller, id_: caller.rest(
              "POST", f"/api/channels/{caller.world.me.channel.id}/members", id_, json={"user_ids": [id_]}),
          theirs=lambda w: w.other.user.id),
    Probe(("DELETE", "/api/channels/{channel_id}/members/{user_id}", "path:channel_id"), remove_a_member,
          theirs=lambda w: w.other.channel.id, own=lambda w: w.me.channel.id),
    Probe(("DELETE", "/api/channels/{channel_id}/members/{user_id}", "path:user_id"),
          lambda caller, id_: caller.rest("DELETE", f"/api/channels/{caller.world.me.channel.id}/members/{id_}", id_),
          theirs=their_member, own=lambda w: w.member.id),
    Probe(("GET", "/contents/channel/{channel_id}", "path:channel_id"), rest("GET", "/contents/channel/{id}"),
          theirs=lambda w: w.other.channel.id, own=lambda w: w.me.channel.id),
    Probe(("GET", "/api/contents/channel/{channel_id}", "path:channel_id"), rest("GET", "/api/contents/channel/{id}"),
          theirs=lambda w: w.other.channel.id, own=lambda w: w.me.channel.id),
    Probe(("GET", "/api/contents/{channel_id}/status", "path:channel_id"), rest("GET", "/api/contents/{id}/status"),
          theirs=lambda w: w.other.channel.id, own=lambda w: w.me.channel.id),
    Probe(("POST", "/api/contents", "body:channel_id"),
          body("POST", "/api/contents", lambda w, i: {"channel_id": i, "title": "Moths", "description": "Moths fly at night."}),
          theirs=lambda w: w.other.channel.id, own=lambda w: w.me.channel.id),
    Probe(("GET", "/api/contents/{content_id}", "path:content_id"), rest("GET", "/api/contents/{id}"),
          theirs=lambda w: w.other.content.id, own=lambda w: w.me.content.id),
    Probe(("POST", "/api/contents/{content_id}/regenerate", "path:content_id"), rest("POST", "/api/contents/{id}/regenerate"),
          theirs=lambda w: w.other.failed_content.id, own=lambda w: w.me.failed_content.id),
    Probe(("POST", "/api/contents/status/batch", "body:content_ids"), batch("POST", "/api/contents/status/batch", "content_ids"),
          theirs=lambda w: w.other.content.id, own=lambda w: w.me.content.id),
    Probe(("GET", "/api/contents/{channel_id}/events", "path:channel_id"), sse,
          theirs=lambda w: w.other.channel.id, own=lambda w: w.me.channel.id),
    # A plain HTTP request to a WebSocket path is told to upgrade, whatever the id.
    Probe(("GET", "/api/contents/{channel_id}/ws", "path:channel_id"), rest("GET", "/api/contents/{id}/ws"),
          theirs=lambda w: w.other.channel.id),
    Probe(("WS", "/api/contents/{channel_id}/ws", "path:channel_id"), channel_socket,
          theirs=lambda w: w.other.channel.id, own=lambda w: w.me.channel.id),
    Probe(("WS", "/api/contents/{channel_id}/ws", "message:channel_id"), channel_socket_claiming,
          theirs=lambda w: w.other.channel.id, own=lambda w: w.me.channel.id),
    Probe(("WS", "/api/contents/{channel_id}/ws", "message:user_id"), their_channel_socket_as,
          theirs=lambda w: w.other.user.id),
    Probe(("WS", "/v1/ws", "message:user_id"), own_socket_as, theirs=lambda w: w.other.user.id),
    Probe(("HTTP", "/app/channels/{channel_id}/", "path:channel_id"),
          lambda caller, id_: caller.page(f"/app/channels/{id_}/", id_),
          theirs=lambda w: w.other.channel.id, own=lambda w: w.me.channel.id),
    # Videos are public; the one nobody may see is a video removed by moderation.
    Probe(("GET", "/v1/videos/{video_id}", "path:video_id"), rest("GET", "/v1/videos/{id}"),
          theirs=lambda w: w.deleted_video.id, own=lambda w: w.me.video.id),
    Probe(("POST", "/v1/videos/{video_id}/view", "path:video_id"), rest("POST", "/v1/videos/{id}/view"),
          theirs=lambda w: w.deleted_video.id, own=lambda w: w.me.video.id),
    Probe(("POST", "/v1/videos/{video_id}/like", "path:video_id"), rest("POST", "/v1/videos/{id}/like"),
          theirs=lambda w: w.deleted_video.id, own=lambda w: w.me.video.id),
    Probe(("DELETE", "/v1/videos/{video_id}/like", "path:video_id"), rest("DELETE", "/v1/videos/{id}/like"),
          theirs=lambda w: w.deleted_video.id, own=lambda w: w.me.video.id),
    Probe(("GET", "/v1/videos/{video_id}/comments", "path:video_id"), rest("GET", "/v1/videos/{id}/comments"),
          theirs=lambda w: w.deleted_video.id, own=lambda w: w.me.video.id),
    Probe(("POST", "/v1/videos/{video_id}/comments", "path:video_id"),
          lambda caller, id_: caller.rest("POST", f"/v1/videos/{id_}/comments", id_, json={"text": "Nice."}),
          theirs=lambda w: w.deleted_video.id, own=lambda w: w.me.video.id),
    Probe(("POST", "/v1/videos/batch-metadata", "body:video_ids"), batch("POST", "/v1/videos/batch-metadata", "video_ids"),
          theirs=lambda w: w.deleted_video.id, own=lambda w: w.me.video.id),
    Probe(("POST", "/v1/videos", "body:remix_of"), upload_remix,
          theirs=lambda w: w.deleted_video.id, own=lambda w: w.me.video.id),
    Probe(("POST", "/v1/admin/videos/batch-delete", "body:video_ids"),
          batch("POST", "/v1/admin/videos/batch-delete", "video_ids", staff=True, reason="spam"),
          theirs=lambda w: w.deleted_video.id, own=lambda w: w.other.video.id),
    # AI jobs: only their owner's.
    Probe(("POST", "/v1/ai/jobs", "body:video_id"),
          body("POST", "/v1/ai/jobs", lambda w, i: {"kind": "glitch", "video_id": i}),
          theirs=lambda w: w.deleted_video.id, own=lambda w: w.me.video.id),
    Probe(("GET", "/v1/ai/jobs/{job_id}", "path:job_id"), rest("GET", "/v1/ai/jobs/{id}"),
          theirs=lambda w: w.other.job.id, own=lambda w: w.me.job.id),
    Probe(("POST", "/v1/ai/jobs/{job_id}/cancel", "path:job_id"), rest("POST", "/v1/ai/jobs/{id}/cancel"),
          theirs=lambda w: w.other.job.id, own=lambda w: w.me.job.id),
    Probe(("POST", "/v1/ai/jobs/batch-status", "body:job_ids"), batch("POST", "/v1/ai/jobs/batch-status", "job_ids"),
          theirs=lambda w: w.other.job.id, own=lambda w: w.me.job.id),
    # Notifications: only their recipient's.
    Probe(("POST", "/v1/notifications/batch-mark-read", "body:notification_ids"),
          batch("POST", "/v1/notifications/batch-mark-read", "notification_ids"),
          theirs=lambda w: w.other.notification.id, own=lambda w: w.me.notification.id),
    # Blocks: another user's block is one the other made.
    Probe(("DELETE", "/v1/blocks/{user_id}", "path:user_id"), rest("DELETE", "/v1/blocks/{id}"),
          theirs=their_member, own=lambda w: w.blocked.id),
    Probe(("POST", "/v1/blocks/batch", "body:user_ids"), batch("POST", "/v1/blocks/batch", "user_ids"),
          theirs=lambda w: w.other.user.id),
    # Tokens, by the id GET /v1/auth/tokens lists: another user's token is not mine to revoke.
    Probe(("DELETE", "/v1/auth/tokens/{token_id}", "path:token_id"), rest("DELETE", "/v1/auth/tokens/{id}"),
          theirs=lambda w: token_public_id(hash_token(w.other.token)),
          own=lambda w: token_public_id(hash_token(w.me.spare_token))),
]


@pytest.fixture(scope="module")
def committed(django_db_setup, django_db_blocker) -> Iterator[tuple[World, str]]:
    """The world and my session cookie, committed for the module, removed at its end."""
    with django_db_blocker.unblock():
        world = seed_world()
        browser = Client()
        browser.force_login(world.me.user)
        try:
            yield world, f"sessionid={browser.cookies['sessionid'].value}"
        finally:
            call_command("flush", interactive=False, verbosity=0)


@pytest.fixture(scope="module")
def world(committed) -> World:
    return committed[0]


@pytest.fixture(scope="module")
def server(world) -> Iterator[Daphne]:
    daphne = Daphne()
    yield daphne
    daphne.close()


@pytest.fixture
def caller(server, committed) -> Iterator[Caller]:
    world, session_cookie = committed
    with httpx.Client(timeout=20) as http:
        yield Caller(server, world, http, session_cookie)


def _probe(row: Any) -> Probe:
    return row.values[0] if hasattr(row, "values") else row


def _name(probe: Probe) -> str:
    method, path, where = probe.key
    return f"{method} {path} {where}"


@pytest.mark.parametrize("probe", MATRIX, ids=_name)
def test_another_users_id_is_answered_as_a_missing_one(probe: Probe, caller: Caller) -> None:
    theirs = str(probe.theirs(caller.world))
    for_theirs = probe.ask(caller, theirs)
    for_missing = probe.ask(caller, missing_id())
    assert for_theirs == for_missing, f"another user's id:\n{for_theirs}\na missing id:\n{for_missing}"
    if probe.own is not None:
        own = str(probe.own(caller.world))
        assert probe.ask(caller, own) != for_missing, "my own id is answered as a missing one: the probe proves nothing"


def test_every_id_taking_input_is_in_the_matrix(world) -> None:
    from rest_framework.test import APIClient

    schema = APIClient().get("/api/schema/?format=json").json()
    in_schema = id_inputs_in_schema(schema)
    routes = {route for route in id_routes_in_urlconf() if not route.startswith(tuple(NOT_PROBED))}
    # Routes the schema does not describe (HTML pages) are probed by path.
    pages = {("HTTP", route, f"path:{name}") for route in routes - set(schema["paths"]) for name in _parameters(route)}
    expected = in_schema | id_inputs_of_websockets() | pages
    probed = {_probe(row).key for row in MATRIX}
    assert not expected - probed, f"inputs that take an id and are not in the matrix: {sorted(expected - probed)}"
    assert not probed - expected, f"rows of the matrix that match no input: {sorted(probed - expected)}"
    assert len(probed) == len(MATRIX), "one row per input"


def _parameters(route: str) -> list[str]:
    return re.findall(r"{(\w+)}", route)
