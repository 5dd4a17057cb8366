"""The unchanged status poll answered ahead of the framework (core.fast_path,
contents.fast_status): in one Redis round trip and no SQL, and never an answer the full
path would not give. Each case is sent through the whole ASGI application twice, the
fast path on and off (POLL_FAST_PATH), from the same state, and everything that comes
out is compared: status, headers (but Date and X-Request-ID), body, the access line,
the metrics and the throttle's count."""

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.throttling import SimpleRateThrottle

from accounts import authentication
from accounts.services import token_cache_key, tokens_revoke
from config.asgi import application
from contents.models import ChannelMembership
from contents.services import channel_remove_member, content_move
from core import fast_path, metrics, throttling
from moderation.services import suspend_users
from realtime import streams
from tests.factories import make_channel, make_content, moved
from tests.helpers import make_user
from tests.subscribe_clients import queries, redis_round_trips

ORIGIN = "https://app.example"
VOLATILE = {b"date", b"x-request-id"}


@dataclass
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: str) -> str:
        return next(value.decode() for key, value in self.headers if key.lower() == name.lower().encode())


class Asgi:
    """The project's ASGI application (config.asgi), called as a server would, on one
    event loop of its own (the fast path's Redis client belongs to its loop)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()

    def get(self, path: str, headers: dict[str, str], *, query: bytes = b"") -> Answer:
        headers = {"Host": "127.0.0.1", **headers}
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
            "path": path, "raw_path": path.encode(), "root_path": "", "query_string": query,
            "headers": [(k.lower().encode(), v.encode("latin-1")) for k, v in headers.items()],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000),
        }
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        self.loop.run_until_complete(application(scope, receive, send))
        start = sent[0]
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return Answer(start["status"], sorted(h for h in start["headers"] if h[0].lower() not in VOLATILE), body)

    def close(self) -> None:
        async def close_redis() -> None:
            await fast_path.redis_client().aclose()

        self.loop.run_until_complete(close_redis())
        self.loop.close()


@pytest.fixture
def asgi() -> Iterator[Asgi]:
    client = Asgi()
    yield client
    client.close()


@dataclass
class World:
    owner: Any
    member: Any
    channel: Any
    content: Any
    token: str  # the member's
    path: str
    etag: str = ""
    tokens: list[str] = field(default_factory=list)

    def headers(self, token: str | None = None, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}", "If-None-Match": self.etag, **extra}


@pytest.fixture
def world(transactional_db, settings, asgi) -> World:
    settings.CORS_ALLOWED_ORIGINS = [ORIGIN]
    owner, member = make_user("owner"), make_user("member")
    channel = make_channel(owner=owner, name="polled")
    ChannelMembership.objects.create(channel=channel, user=member)
    content = make_content(channel)
    _, token = AuthToken.objects.create(user=member)
    world = World(owner, member, channel, content, token, f"/api/contents/{channel.id}/status")
    first = asgi.get(world.path, {"Authorization": f"Bearer {token}"})
    assert first.status == 200
    world.etag = first.header("ETag")
    assert asgi.get(world.path, world.headers()).status == 304  # every cache warm, the token's owner learnt
    return world


# --- what comes out of a request ---------------------------------------------------------


def samples(*metrics_: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for metric in metrics_
        for family in metric.collect()
        for sample in family.samples
        if not sample.name.endswith(("_sum", "_created", "_bucket"))
    }


def throttle_counts() -> int:
    raw = redis.Redis.from_url(settings.CACHE_REDIS_URL)
    return sum(int(raw.get(key) or 0) for key in raw.scan_iter("*throttle_user_*"))


@dataclass
class Outcome:
    answer: Answer
    access: list[tuple[Any, ...]]
    counted: dict[Any, float]
    throttled: int
    fast: dict[str, float]


def through(asgi: Asgi, caplog: pytest.LogCaptureFixture, request: Callable[[], Answer]) -> Outcome:
    """Everything a request leaves behind: its answer, its access line, what the metrics
    counted and the throttle's count (and how the fast path took it)."""
    watched = (metrics.POLLS, metrics.HTTP_REQUEST_SECONDS, metrics.CACHE_LOOKUPS)
    before, throttled, fast = samples(*watched), throttle_counts(), samples(fast_path.FAST_PATH_ANSWERS)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="access"):
        answer = request()
    access = [
        (r.route, r.method, r.status, r.user_id, r.client) for r in caplog.records if r.name == "access"  # type: ignore[attr-defined]
    ]
    after = samples(*watched)
    fast_after = samples(fast_path.FAST_PATH_ANSWERS)
    return Outcome(
        answer,
        access,
        {key: after[key] - before.get(key, 0) for key in after if after[key] != before.get(key, 0)},
        throttle_counts() - throttled,
        {dict(key[1])["result"]: fast_after[key] - fast.get(key, 0) for key in fast_after if fast_after[key] != fast.get(key, 0)},
    )


@contextmanager
def redis_kept() -> Iterator[Callable[[], None]]:
    """A function that puts the cache's Redis back as it is now (keys, values, TTLs)."""
    raw = redis.Redis.from_url(settings.CACHE_REDIS_URL)
    kept = [(key, raw.dump(key), raw.pttl(key)) for key in raw.scan_iter()]

    def restore() -> None:
        raw.flushdb()
        for key, value, ttl in kept:
            if value is not None:  # not gone meanwhile
                raw.restore(key, max(ttl, 0), value, replace=True)

    yield restore


def both_ways(asgi, caplog, settings, prepare: Callable[[], Callable[[], Answer]]) -> tuple[Outcome, Outcome]:
    """The request `prepare` returns, sent with the fast path on and then off, each time
    from the same state (Redis as it was, then what `prepare` sets up); both outcomes,
    after checking they are the same."""
    with redis_kept() as restore:
        settings.POLL_FAST_PATH = True
        on = through(asgi, caplog, prepare())
        restore()
        settings.POLL_FAST_PATH = False
        off = through(asgi, caplog, prepare())
    assert off.fast == {}
    assert on.answer == off.answer
    assert on.access == off.access
    assert on.counted == off.counted
    assert on.throttled == off.throttled
    return on, off


# --- the differential cases ----------------------------------------------------------------


def test_an_unchanged_poll_is_answered_ahead_of_the_framework_with_the_full_paths_very_304(world, asgi, caplog, settings):
    on, _ = both_ways(asgi, caplog, settings, lambda: lambda: asgi.get(world.path, world.headers()))
    assert on.fast == {"answered": 1}
    assert on.answer.status == 304 and on.answer.body == b""
    assert on.answer.header("X-Poll-Interval") == "2" and on.answer.header("ETag") == world.etag
    assert on.access == [("channel-status", "GET", 304, str(world.member.id), "127.0.0.1")]
    assert on.throttled == 1
    assert on.counted[("aistatus_polls_total", (("route", "channel-status"), ("status", "304")))] == 1


@pytest.mark.parametrize(
    "extra",
    [
        {"Origin": ORIGIN},  # an allowed origin: the CORS headers
        {"Origin": "https://elsewhere.example"},  # a refused one: none
        {"Accept-Language": "ko,en;q=0.5"},
        {"Accept-Language": "xx"},
        {"Accept": "application/json"},
        {"Accept": "application/*;q=0.1, text/html"},
    ],
    ids=["allowed-origin", "other-origin", "korean", "unknown-language", "accept-json", "accept-any-application"],
)
def test_the_headers_of_the_middleware_are_the_full_paths(world, asgi, caplog, settings, extra):
    on, _ = both_ways(asgi, caplog, settings, lambda: lambda: asgi.get(world.path, world.headers(**extra)))
    assert on.fast == {"answered": 1}
    assert on.answer.status == 304


def test_an_https_request_behind_the_trusted_proxy_gets_hsts_from_both(world, asgi, caplog, settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_HSTS_SECONDS = 3600  # read by SecurityMiddleware when built: the full path's stack is built anew
    from config import asgi as config_asgi

    config_asgi.django_asgi_app.load_middleware()
    try:
        on, _ = both_ways(asgi, caplog, settings, lambda: lambda: asgi.get(world.path, world.headers(**{"X-Forwarded-Proto": "https"})))
    finally:
        settings.SECURE_HSTS_SECONDS = 0
        config_asgi.django_asgi_app.load_middleware()
    assert on.fast == {"answered": 1}
    assert on.answer.header("Strict-Transport-Security").startswith("max-age=3600")


def test_a_moved_head_is_a_200_from_the_full_path(world, asgi, caplog, settings):
    old_etag = world.etag
    moved(content_move(world.content, to="summarizing"))

    def prepare() -> Callable[[], Answer]:
        world.etag = old_etag
        return lambda: asgi.get(world.path, world.headers())

    on, _ = both_ways(asgi, caplog, settings, prepare)
    assert on.answer.status == 200 and on.fast == {"cache_miss": 1}


def test_a_revoked_token_is_a_401(world, asgi, caplog, settings):
    tokens_revoke(AuthToken.objects.filter(user=world.member))  # its tombstone, on commit
    on, _ = both_ways(asgi, caplog, settings, lambda: lambda: asgi.get(world.path, world.headers()))
    assert on.answer.status == 401 and on.fast == {"cache_miss": 1}


def write_token_entry(row: AuthToken, **user: Any) -> None:
    """The token's cache entry as the full path writes it, with `user`'s values changed."""
    entry = authentication._cache_entry(row)
    entry["user"].update(user)
    cache.set(token_cache_key(row.digest), entry, 30)


def test_an_expired_token_still_in_the_cache_is_a_401(world, asgi, caplog, settings):
    def prepare() -> Callable[[], Answer]:
        # A token that expired a moment ago, its entry still cached (its last second).
        row, token = AuthToken.objects.create(user=world.member, expiry=timedelta(seconds=-1))
        write_token_entry(row)
        return lambda: asgi.get(world.path, world.headers(token))

    on, _ = both_ways(asgi, caplog, settings, prepare)
    assert on.answer.status == 401 and on.fast == {"cache_miss": 1}
    assert on.throttled == 0  # the fast path counted it, then gave it back


def test_an_expiry_that_passes_after_the_owner_was_learnt_is_a_401(world, asgi, caplog, settings, monkeypatch):
    row, token = AuthToken.objects.create(user=world.member, expiry=timedelta(hours=1))
    write_token_entry(row)
    assert asgi.get(world.path, world.headers(token)).status == 304  # learnt, unexpired
    later = timezone.now() + timedelta(hours=2)
    monkeypatch.setattr(timezone, "now", lambda: later)

    def prepare() -> Callable[[], Answer]:
        write_token_entry(row)  # its entry still cached (its last second)
        return lambda: asgi.get(world.path, world.headers(token))

    on, _ = both_ways(asgi, caplog, settings, prepare)
    assert on.answer.status == 401 and on.fast == {"cache_miss": 1}


def test_a_suspended_user_is_a_401(world, asgi, caplog, settings):
    staff = make_user("staff", is_staff=True)
    suspend_users(users=[world.member], by=staff, reason="spam")
    on, _ = both_ways(asgi, caplog, settings, lambda: lambda: asgi.get(world.path, world.headers()))
    assert on.answer.status == 401 and on.fast == {"cache_miss": 1}


def test_a_cached_token_whose_user_is_inactive_is_a_401(world, asgi, caplog, settings):
    row = AuthToken.objects.get(user=world.member)

    def prepare() -> Callable[[], Answer]:
        write_token_entry(row, is_active=False)  # deactivated without its tokens revoked, the entry rewritten
        return lambda: asgi.get(world.path, world.headers())

    on, _ = both_ways(asgi, caplog, settings, prepare)
    assert on.answer.status == 401 and on.fast == {"cache_miss": 1}
    assert on.throttled == 0


def test_a_removed_member_is_a_404(world, asgi, caplog, settings):
    channel_remove_member(channel=world.channel, user_id=world.member.id)  # "no" cached on commit
    on, _ = both_ways(asgi, caplog, settings, lambda: lambda: asgi.get(world.path, world.headers()))
    assert on.answer.status == 404 and on.fast == {"cache_miss": 1}
    assert on.throttled == 1  # DRF throttles before the view looks at the channel


def test_a_user_who_never_was_a_member_is_a_404(world, asgi, caplog, settings):
    _, stranger = AuthToken.objects.create(user=make_user("stranger"))
    on, _ = both_ways(asgi, caplog, settings, lambda: lambda: asgi.get(world.path, world.headers(stranger)))
    assert on.answer.status == 404


def test_a_throttled_client_is_a_429_with_the_same_retry_after(world, asgi, caplog, settings, monkeypatch):
    monkeypatch.setattr(SimpleRateThrottle, "THROTTLE_RATES", {**SimpleRateThrottle.THROTTLE_RATES, "user": "5/min"})
    now = [time.time()]
    monkeypatch.setattr(throttling.SlidingWindowCounterMixin, "timer", staticmethod(lambda: now[0]))

    def prepare() -> Callable[[], Answer]:
        raw = redis.Redis.from_url(settings.CACHE_REDIS_URL)
        for key in raw.scan_iter("*throttle_user_*"):
            raw.delete(key)
        for _ in range(5):
            assert asgi.get(world.path, world.headers()).status == 304
        return lambda: asgi.get(world.path, world.headers())

    on, _ = both_ways(asgi, caplog, settings, prepare)
    assert on.answer.status == 429 and on.fast == {"throttled": 1}
    assert on.answer.header("Retry-After")


def test_a_head_that_expired_from_redis_is_read_by_the_full_path(world, asgi, caplog, settings):
    def prepare() -> Callable[[], Answer]:
        cache.delete(streams.head_key(streams.channel_stream(world.channel.id)))
        return lambda: asgi.get(world.path, world.headers())

    on, _ = both_ways(asgi, caplog, settings, prepare)
    assert on.answer.status == 304 and on.fast == {"cache_miss": 1}


@pytest.mark.parametrize(
    ("headers", "query"),
    [
        ({"If-None-Match": None}, b""),  # not conditional
        ({"If-None-Match": '"0123456789abcdef0123456789abcdef"'}, b""),  # a wrong ETag
        ({"If-None-Match": "*"}, b""),
        ({}, b"since=2020-01-01T00:00:00Z"),  # the ETag of another query
        ({}, b"since=yesterday"),  # a 400
        ({"Authorization": "Bearer"}, b""),  # no token
        ({"Authorization": "Bearer a b"}, b""),  # spaces
        ({"Authorization": "Bearer \xff\xfe"}, b""),  # bytes that are not UTF-8
        ({"Authorization": "Bearer abc\x00def"}, b""),  # a NUL
        ({"Authorization": "Bearer 0123456789abcdef"}, b""),  # unknown
        ({"Authorization": None}, b""),  # anonymous
        ({"Authorization": "Token abc"}, b""),  # another scheme
        ({"Cookie": "django_language=ko"}, b""),  # left to Django
        ({"Host": "evil.example"}, b""),  # a host that is not allowed: 400
        ({"Accept": "text/html"}, b""),  # 406
        ({"Content-Type": "text/plain; charset=rot13"}, b""),  # refused by its charset: 400
    ],
    ids=[
        "no-if-none-match", "wrong-etag", "star", "since", "bad-since", "no-token", "spaces", "not-utf8", "nul",
        "unknown-token", "anonymous", "other-scheme", "cookie", "bad-host", "not-acceptable", "bad-charset",
    ],
)
def test_requests_the_fast_path_does_not_answer_get_the_full_paths_answer(world, asgi, caplog, settings, headers, query):
    def request() -> Answer:
        sent = {key: value for key, value in {**world.headers(), **headers}.items() if value is not None}
        return asgi.get(world.path, sent, query=query)

    on, _ = both_ways(asgi, caplog, settings, lambda: request)
    assert "answered" not in on.fast


# --- what a fast 304 costs ---------------------------------------------------------------


def test_a_fast_304_costs_one_redis_round_trip_and_no_sql(world, asgi):
    with redis_round_trips() as commands, queries() as sql:
        assert asgi.get(world.path, world.headers()).status == 304
    assert commands == ["EVALSHA"]
    assert sql == []


def test_the_full_paths_304_costs_more_and_the_first_poll_of_a_token_in_a_process_one_more(world, asgi, settings):
    settings.POLL_FAST_PATH = False
    with redis_round_trips() as commands, queries() as sql:
        assert asgi.get(world.path, world.headers()).status == 304
    assert len(commands) >= 4 and sql == [], commands  # 5 today: the token, the throttle, the access, the head, the processing set
    cache.delete(streams.head_key(streams.channel_stream(world.channel.id)))
    with queries() as sql:
        assert asgi.get(world.path, world.headers()).status == 304
    assert sql  # a head read from the database: the count sees the full path's thread
    settings.POLL_FAST_PATH = True
    _, token = AuthToken.objects.create(user=world.member)
    assert asgi.get(world.path, world.headers(token)).status == 304  # full path: the token's entry written
    with redis_round_trips() as commands:
        assert asgi.get(world.path, world.headers(token)).status == 304
    assert commands == ["GET", "EVALSHA"]  # its owner learnt, then the one trip
    with redis_round_trips() as commands:
        assert asgi.get(world.path, world.headers(token)).status == 304
    assert commands == ["EVALSHA"]
    connection.close()


# --- Redis away ------------------------------------------------------------------------


@pytest.fixture
def silent_redis(asgi, monkeypatch) -> Iterator[None]:
    """The fast path's Redis accepts connections and never answers (the full path's
    cache is left alone)."""

    held: list[asyncio.StreamWriter] = []

    async def start() -> asyncio.Server:
        return await asyncio.start_server(lambda reader, writer: held.append(writer), "127.0.0.1", 0)

    server = asgi.loop.run_until_complete(start())
    port = server.sockets[0].getsockname()[1]
    from core import fast_redis

    client = fast_redis.LeanClient(f"redis://127.0.0.1:{port}/0", timeout=0.5, connect_timeout=0.5)

    class Silent:
        def __init__(self) -> None:
            self.client = client

    monkeypatch.setitem(fast_path._loops, asgi.loop, Silent())
    monkeypatch.setattr(fast_path._state, "paused_until", 0.0)
    yield
    for writer in held:
        writer.close()
    server.close()


def test_a_redis_that_does_not_answer_hands_the_poll_to_django_and_pauses_the_fast_path(world, asgi, caplog, silent_redis):
    outcome = through(asgi, caplog, lambda: asgi.get(world.path, world.headers()))
    assert outcome.answer.status == 304  # the full path's, from its own cache
    assert outcome.fast == {"unreachable": 1}
    assert fast_path.redis_paused()
    again = through(asgi, caplog, lambda: asgi.get(world.path, world.headers()))
    assert again.answer == outcome.answer and again.fast == {}  # not even tried while paused
