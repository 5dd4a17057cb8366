"""Redis caches of the contents API and of bearer tokens: cheap polls, never a stale status,
never a revoked token or a removed member let in."""

import time
from datetime import timedelta

import pytest
import redis
from django.conf import settings
from knox.models import AuthToken
from rest_framework.test import APIClient

from contents import caching
from contents.models import ChannelMembership, Content
from contents.services import content_move, content_restart
from moderation.services import suspend_users
from realtime import streams
from tests.factories import make_channel, make_content, moved
from tests.helpers import api_client_for, make_user, run_burst_worker


@pytest.fixture
def owner(db):
    return make_user("owner")


@pytest.fixture
def channel(owner):
    return make_channel(owner=owner, name="cached")


@pytest.fixture
def client(owner):
    return api_client_for(owner)


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def read_everywhere(client, channel, content) -> dict[str, str]:
    """The content's processing_status as each cached read path answers it."""
    status = client.get(f"/api/contents/{channel.id}/status").json()
    listed = {
        c["id"]: c["processing_status"]
        for key in ("processing_contents", "completed_contents", "failed_contents")
        for c in status[key]
    }
    return {
        "status": listed[str(content.id)],
        "list": client.get(f"/api/contents/channel/{channel.id}").json()["contents"][0]["processing_status"],
        "legacy": client.get(f"/contents/channel/{channel.id}").json()["contents"][0]["processing_status"],
        "batch": client.post("/api/contents/status/batch", {"content_ids": [str(content.id)]}, format="json").json()[
            "statuses"
        ][0]["processing_status"],
    }


# --- polls ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_unchanged_status_poll_is_a_304_without_any_sql_once_warm(client, channel, django_assert_num_queries):
    make_content(channel)
    etag = client.get(f"/api/contents/{channel.id}/status")["ETag"]
    with django_assert_num_queries(0):  # token, channel access, head, processing set: all from Redis
        unchanged = client.get(f"/api/contents/{channel.id}/status", HTTP_IF_NONE_MATCH=etag)
    assert unchanged.status_code == 304
    assert unchanged["X-Poll-Interval"] == "2"
    with django_assert_num_queries(0):
        assert client.get(f"/api/contents/{channel.id}/status").json()["total_processing"] == 1


# --- never a stale status ------------------------------------------------------------------


@pytest.mark.django_db
def test_every_transition_is_seen_by_the_very_next_read(client, channel, django_capture_on_commit_callbacks):
    content = make_content(channel)
    assert set(read_everywhere(client, channel, content).values()) == {"uploading"}
    for stage in ("summarizing", "qa_generating", "completed", "uploading", "summarizing", "failed", "uploading"):
        read_everywhere(client, channel, content)  # every cache warm with the old status
        with django_capture_on_commit_callbacks(execute=True):
            content = (content_restart(content) if stage == "uploading"
                       else moved(content_move(content, to=stage, error_message="It broke.")))
        assert set(read_everywhere(client, channel, content).values()) == {stage}, stage


@pytest.mark.django_db(transaction=True)
def test_a_transition_committed_by_a_real_worker_process_is_seen_by_the_next_read(client_for):
    owner = make_user("owner")
    client = client_for(owner)
    channel_id = client.post("/api/channels", {"name": "worker"}, format="json").json()["id"]
    content_id = client.post(
        "/api/contents", {"channel_id": channel_id, "title": "Cats", "description": "Cats sleep. Dogs walk. Birds sing."},
        format="json",
    ).json()["id"]
    channel, content = Content.objects.get(id=content_id).channel, Content.objects.get(id=content_id)
    etag = client.get(f"/api/contents/{channel_id}/status")["ETag"]
    assert set(read_everywhere(client, channel, content).values()) == {"uploading"}

    run_burst_worker()  # a forked work horse commits the transitions and raises the head

    assert client.get(f"/api/contents/{channel_id}/status", HTTP_IF_NONE_MATCH=etag).status_code == 200
    assert set(read_everywhere(client, channel, content).values()) == {"completed"}


@pytest.mark.django_db
def test_a_reader_that_looked_before_a_commit_cannot_lower_the_head(client, channel, django_capture_on_commit_callbacks):
    content = make_content(channel)
    read_everywhere(client, channel, content)
    stream = streams.channel_stream(channel.id)
    seen_before = streams.current_seq(stream)  # a slow reader found the head missing and read this
    with django_capture_on_commit_callbacks(execute=True):
        content_move(content, to="summarizing")
    streams.advance_head(stream, seen_before)  # ...and sets it only now
    assert set(read_everywhere(client, channel, content).values()) == {"summarizing"}


@pytest.mark.django_db
def test_redis_restarted_without_its_data_falls_back_to_the_database(client, channel):
    content = make_content(channel)
    read_everywhere(client, channel, content)
    redis.Redis.from_url(settings.REDIS_URL).flushdb()  # a restart that lost everything
    content_move(content, to="summarizing")  # committed while Redis was empty (no hook ran)
    assert set(read_everywhere(client, channel, content).values()) == {"summarizing"}


@pytest.mark.django_db
def test_a_head_that_missed_its_advance_is_read_from_the_database_within_head_seconds(client, channel, monkeypatch):
    monkeypatch.setattr(streams, "HEAD_SECONDS", 1)
    content = make_content(channel)
    read_everywhere(client, channel, content)
    # The writer died between COMMIT and its on-commit hook: the head was never raised.
    content_move(content, to="summarizing")
    time.sleep(1.2)
    assert set(read_everywhere(client, channel, content).values()) == {"summarizing"}


# --- tokens --------------------------------------------------------------------------------


def login(username: str) -> str:
    return APIClient().post("/v1/auth/token", {"username": username, "password": f"pw-{username}"}, format="json").json()["token"]


@pytest.mark.django_db
def test_a_logged_out_token_is_refused_even_after_it_was_cached(owner, channel, django_capture_on_commit_callbacks, django_assert_num_queries):
    client = bearer(login("owner"))
    assert client.get(f"/api/contents/{channel.id}/status").status_code == 200
    with django_assert_num_queries(0):  # the token now comes from Redis
        assert client.get(f"/api/contents/{channel.id}/status").status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete("/v1/auth/token").status_code == 204
    assert client.get(f"/api/contents/{channel.id}/status").status_code == 401


@pytest.mark.django_db
def test_a_suspended_users_cached_token_is_refused(channel, django_capture_on_commit_callbacks):
    spammer, staff = make_user("spammer"), make_user("staff", is_staff=True)
    ChannelMembership.objects.create(channel=channel, user=spammer)
    client = bearer(login("spammer"))
    assert client.get(f"/api/contents/{channel.id}/status").status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        suspend_users(users=[spammer], by=staff, reason="spam")
    assert client.get(f"/api/contents/{channel.id}/status").status_code == 401


@pytest.mark.django_db
def test_a_request_that_read_the_token_before_its_revocation_cannot_cache_it_again(
    owner, channel, monkeypatch, django_capture_on_commit_callbacks
):
    import accounts.authentication

    token = login("owner")
    row = AuthToken.objects.select_related("user").get(user=owner)
    with django_capture_on_commit_callbacks(execute=True):
        assert bearer(token).delete("/v1/auth/token").status_code == 204
    # A slow request missed the cache and read the token just before the revocation committed...
    from django.core.cache import cache

    class MissedBeforeRevocation:
        def get(self, key):
            return None

        def add(self, *args):
            return cache.add(*args)

    monkeypatch.setattr(accounts.authentication, "cache", MissedBeforeRevocation())
    monkeypatch.setattr(accounts.authentication, "_stored_token", lambda token, digest: row)
    assert bearer(token).get(f"/api/contents/{channel.id}/status").status_code == 200
    monkeypatch.undo()
    # ...its answer stands, but it did not put the token back in the cache.
    assert bearer(token).get(f"/api/contents/{channel.id}/status").status_code == 401


@pytest.mark.django_db
def test_the_token_cache_holds_no_password_hash_and_its_user_saves_safely(owner, channel):
    client = bearer(login("owner"))
    assert client.get(f"/api/contents/{channel.id}/status").status_code == 200
    raw = redis.Redis.from_url(settings.CACHE_REDIS_URL)
    values = [raw.get(key) for key in raw.scan_iter("*auth:token:*")]
    entries = [value for value in values if isinstance(value, bytes)]
    assert values and entries == values
    owner.refresh_from_db()
    assert not any(owner.password.encode() in entry for entry in entries)

    import accounts.authentication

    cached = accounts.authentication._from_cache_entry(
        pickle_loads(entries[0])
    )
    assert cached.user.get_deferred_fields() == {"password"}
    cached.user.first_name = "Renamed"
    cached.user.save()  # writes the loaded fields only: the hash is kept
    owner.refresh_from_db()
    assert owner.first_name == "Renamed" and owner.check_password("pw-owner")


def pickle_loads(value: bytes):
    import pickle

    return pickle.loads(value)  # noqa: S301 - our own cache's entry, written by this test's login


@pytest.mark.django_db
def test_an_expired_token_is_refused_and_deleted(owner, channel):
    _, token = AuthToken.objects.create(user=owner, expiry=timedelta(seconds=1))
    client = bearer(token)
    assert client.get(f"/api/contents/{channel.id}/status").status_code == 200
    time.sleep(1.1)
    assert client.get(f"/api/contents/{channel.id}/status").status_code == 401
    assert not AuthToken.objects.filter(user=owner).exists()


@pytest.mark.django_db
def test_a_login_deletes_the_users_expired_tokens(owner):
    expired, _ = AuthToken.objects.create(user=owner, expiry=timedelta(seconds=-1))
    login("owner")
    assert not AuthToken.objects.filter(digest=expired.digest).exists()


# --- channel access ------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_removed_member_is_refused_even_after_their_access_was_cached(client, channel, django_capture_on_commit_callbacks):
    member = make_user("member")
    ChannelMembership.objects.create(channel=channel, user=member)
    content = make_content(channel)
    member_client = api_client_for(member)
    read_everywhere(member_client, channel, content)
    read_everywhere(member_client, channel, content)  # every path now answers from Redis

    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(f"/api/channels/{channel.id}/members/{member.id}").status_code == 204

    assert member_client.get(f"/api/contents/{channel.id}/status").status_code == 404
    assert member_client.get(f"/api/contents/channel/{channel.id}").status_code == 404
    assert member_client.get(f"/contents/channel/{channel.id}").status_code == 404
    batch = member_client.post("/api/contents/status/batch", {"content_ids": [str(content.id)]}, format="json").json()
    assert batch == {"statuses": [], "not_found": [str(content.id)]}
    # A request that checked access before the removal committed cannot cache its "yes" again.
    caching.remember_reader(channel.id, member.id, True)
    assert member_client.get(f"/api/contents/{channel.id}/status").status_code == 404


@pytest.mark.django_db
def test_an_added_member_is_let_in_even_after_a_refusal_was_cached(client, channel, django_capture_on_commit_callbacks):
    member = make_user("member")
    member_client = api_client_for(member)
    assert member_client.get(f"/api/contents/{channel.id}/status").status_code == 404
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(f"/api/channels/{channel.id}/members", {"user_ids": [str(member.id)]}, format="json").status_code == 200
    assert member_client.get(f"/api/contents/{channel.id}/status").status_code == 200
