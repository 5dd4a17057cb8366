"""Stream tickets leak nothing: a ticket is spent by the request that carries it, even
one that is refused for another reason, and no ticket is written to an access log."""

import httpx
import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin

from config.daphne_server import redact_tickets
from contents.services import channel_create
from tests.helpers import api_client_for, make_user
from tests.live import Daphne, Stack
from tests.stream_clients import status_of, ticket, wait_for


@pytest.fixture
def live(transactional_db):
    """A daphne, a channel, its owner's API client."""
    owner = make_user("owner")
    api = api_client_for(owner)
    channel = channel_create(owner=owner, name="tickets")
    server = Daphne()
    yield server, api, str(channel.id)
    server.stop()


def test_a_ticket_is_spent_by_a_request_that_is_refused(live):
    server, api, channel_id = live
    events = server.url(f"/api/contents/{channel_id}/events")
    # A ticket opens the stream once.
    fresh = ticket(api)
    assert status_of(events, params={"ticket": fresh}) == 200
    assert status_of(events, params={"ticket": fresh}) == 401
    outcomes = []
    refusals = [
        ("bad Last-Event-ID", lambda t: httpx.get(events, params={"ticket": t, "last_event_id": "²"})),
        ("a POST (no CSRF token)", lambda t: httpx.post(events, params={"ticket": t})),
        ("unknown path", lambda t: httpx.get(server.url("/api/contents/nowhere/events"), params={"ticket": t})),
    ]
    for name, refuse in refusals:
        spent = ticket(api)
        first = refuse(spent)
        outcomes.append((name, first.status_code, status_of(events, params={"ticket": spent})))
    # A WebSocket from a foreign origin, refused before any consumer runs.
    spent = ticket(api)
    with pytest.raises(InvalidStatus):
        connect(server.ws_url(f"/api/contents/{channel_id}/ws?ticket={spent}"), origin=Origin("https://evil.example"), open_timeout=10)
    outcomes.append(("foreign origin", 403, status_of(events, params={"ticket": spent})))
    assert outcomes == [
        ("bad Last-Event-ID", 400, 401), ("a POST (no CSRF token)", 403, 401), ("unknown path", 404, 401),
        ("foreign origin", 403, 401),
    ]


@pytest.mark.django_db(transaction=True)
def test_make_runs_dev_server_writes_no_ticket_to_its_access_log(settings):
    """RUN_MODE=dev serves with daphne, whose access log (stdout) carries each URI."""
    owner = make_user("owner")
    api = api_client_for(owner)
    channel = channel_create(owner=owner, name="logged")
    stack = Stack(redis_url=settings.REDIS_URL, RUN_MODE="dev", PYTHONUNBUFFERED="1")
    events = stack.url(f"/api/contents/{channel.id}/events")
    try:
        streamed, refused = ticket(api), ticket(api)
        with httpx.stream("GET", events, params={"ticket": streamed}, timeout=10) as response:
            assert response.status_code == 200
        assert httpx.get(events, params={"last_event_id": "x", "ticket": refused}).status_code == 400
        logged = f'"GET /api/contents/{channel.id}/events?last_event_id=x&ticket=[redacted]" 400'
        assert wait_for(lambda: logged in stack.output(), timeout=10), stack.output()[-2000:]
        output = stack.output()
    finally:
        stack.stop()
    assert streamed not in output and refused not in output


@pytest.mark.parametrize(
    ("uri", "logged"),
    [
        ("/api/contents/x/events?ticket=abc123", "/api/contents/x/events?ticket=[redacted]"),
        ("/e?last_event_id=4&ticket=abc&named=true", "/e?last_event_id=4&ticket=[redacted]&named=true"),
        ("/e?%74icket=abc", "/e?%74icket=[redacted]"),
        ("/e?tickets=1&x=ticket", "/e?tickets=1&x=ticket"),
        ("/v1/ws", "/v1/ws"),
    ],
)
def test_the_access_log_redaction(uri, logged):
    assert redact_tickets(uri) == logged
