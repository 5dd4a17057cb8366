"""The contents API as the frontend uses it: Bearer tokens, the contract's paths and shapes."""

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from contents.models import ChannelMembership, Content
from contents.services import content_move
from tests.factories import make_channel, make_content, moved
from tests.helpers import api_client_for, make_user

pytestmark = pytest.mark.django_db


def finish(content: Content, stage: str = "completed") -> Content:
    """Walk a content through the pipeline's transitions to `stage`."""
    path = ["summarizing", "qa_generating", "completed"] if stage == "completed" else ["failed"]
    for step in path:
        content = moved(content_move(content, to=step, error_message="It broke."))
    return content


@pytest.fixture
def owner():
    return make_user("owner")


@pytest.fixture
def channel(owner):
    return make_channel(owner=owner, name="mine")


@pytest.fixture
def client(owner):
    return api_client_for(owner)


# --- auth -----------------------------------------------------------------------------


def test_a_call_without_credentials_is_a_401_problem_with_a_bearer_challenge(channel):
    from rest_framework.test import APIClient

    response = APIClient().get(f"/api/contents/channel/{channel.id}")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"
    assert response["Content-Type"] == "application/problem+json"
    body = response.json()
    assert set(body) == {"type", "title", "status", "detail", "errors"}
    assert body["status"] == 401 and body["errors"][0]["code"] == "not_authenticated"


def test_a_token_is_issued_for_a_password_and_revoked_by_delete(channel, owner, django_capture_on_commit_callbacks):
    from rest_framework.test import APIClient

    anonymous = APIClient()
    token = anonymous.post("/v1/auth/token", {"username": "owner", "password": "pw-owner"}, format="json").json()["token"]
    bearer = APIClient()
    bearer.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    assert bearer.get(f"/api/contents/channel/{channel.id}").status_code == 200

    with django_capture_on_commit_callbacks(execute=True):  # the revocation commits
        assert bearer.delete("/v1/auth/token").status_code == 204
    assert bearer.get(f"/api/contents/channel/{channel.id}").status_code == 401


def test_a_wrong_password_gets_no_token(owner):
    from rest_framework.test import APIClient

    response = APIClient().post("/v1/auth/token", {"username": "owner", "password": "nope"}, format="json")
    assert response.status_code == 401
    assert "token" not in response.json()


def test_tokens_are_stored_hashed(owner):
    from knox.models import AuthToken
    from rest_framework.test import APIClient

    token = APIClient().post("/v1/auth/token", {"username": "owner", "password": "pw-owner"}, format="json").json()["token"]
    stored = AuthToken.objects.get(user=owner)
    assert token not in (stored.digest, stored.token_key)
    assert len(stored.digest) == 128


def test_a_browser_session_must_send_its_csrf_token_on_writes(owner, channel):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    login_page = browser.get("/accounts/login/")
    csrf = login_page.cookies["csrftoken"].value
    assert browser.post("/accounts/login/", {"username": "owner", "password": "pw-owner", "csrfmiddlewaretoken": csrf}).status_code == 302

    assert browser.get(f"/api/contents/channel/{channel.id}").status_code == 200
    body = {"channel_id": str(channel.id), "title": "t", "description": "d"}
    refused = browser.post("/api/contents", body, content_type="application/json")
    assert refused.status_code == 403
    assert refused["Content-Type"] == "application/problem+json"
    csrf = browser.cookies["csrftoken"].value
    accepted = browser.post("/api/contents", body, content_type="application/json", HTTP_X_CSRFTOKEN=csrf)
    assert accepted.status_code == 201


# --- channels ---------------------------------------------------------------------------


def test_a_channel_is_readable_by_its_owner_and_members_only(client, channel, owner):
    member, stranger = make_user("member"), make_user("stranger")
    make_content(channel)

    added = client.post(f"/api/channels/{channel.id}/members", {"user_ids": [str(member.id)]}, format="json")
    assert added.status_code == 200
    assert added.json()["added"] == [str(member.id)]
    assert added.json()["not_found"] == []

    assert api_client_for(member).get(f"/api/contents/channel/{channel.id}").status_code == 200
    for path in (f"/api/contents/channel/{channel.id}", f"/contents/channel/{channel.id}", f"/api/contents/{channel.id}/status"):
        response = api_client_for(stranger).get(path)
        assert response.status_code == 404, path
        assert response["Content-Type"] == "application/problem+json"


def test_adding_members_never_tells_whether_a_user_id_exists(client, channel):
    """Before: an existing id came back in `added`, an unknown one in `not_found`. Now
    both get the same answer, and the same removal afterwards."""
    real, unknown = str(make_user("someone-real").id), str(uuid.uuid4())
    answers = {uid: client.post(f"/api/channels/{channel.id}/members", {"user_ids": [uid]}, format="json") for uid in (real, unknown)}
    for uid, answer in answers.items():
        assert (answer.status_code, answer.json()) == (200, {"channel_id": str(channel.id), "added": [uid], "not_found": []})
    assert [client.delete(f"/api/channels/{channel.id}/members/{uid}").status_code for uid in (real, unknown)] == [204, 204]
    assert [client.delete(f"/api/channels/{channel.id}/members/{uid}").status_code for uid in (real, unknown)] == [404, 404]


def test_only_the_owner_adds_members(channel):
    member = make_user("member")
    ChannelMembership.objects.create(channel=channel, user=member)
    response = api_client_for(member).post(f"/api/channels/{channel.id}/members", {"user_ids": [str(make_user().id)]}, format="json")
    assert response.status_code == 403
    assert response.json()["errors"][0]["code"] == "permission_denied"


# --- submit -----------------------------------------------------------------------------


def test_submitting_answers_201_idle_uploading_with_the_caller_as_provider(client, channel, owner):
    someone_else = make_user()
    response = client.post(
        "/api/contents",
        {"channel_id": str(channel.id), "url": "https://example.com/a", "provider_id": str(someone_else.id)},
        format="json",
    )
    assert response.status_code == 201
    body = response.json()
    assert (body["status"], body["processing_status"], body["progress"], body["version"]) == ("idle", "uploading", 0, 1)
    assert body["provider_id"] == str(owner.id)
    assert set(body) == {
        "id", "channel_id", "provider_id", "url", "img_url", "video_url", "title", "description", "category",
        "status", "processing_status", "progress", "estimated_completion", "error_message", "ai_gen_metadata",
        "link_preview_metadata", "version", "created_at", "updated_at",
    }


def test_submitting_enqueues_the_pipeline_only_once_committed(client, channel, django_capture_on_commit_callbacks):
    import django_rq

    queue = django_rq.get_queue("default")
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        client.post("/api/contents", {"channel_id": str(channel.id), "title": "t", "description": "d"}, format="json")
        assert queue.count == 0
    for callback in callbacks:
        callback()
    assert queue.count == 1


@pytest.mark.parametrize(
    ("body", "attr"),
    [
        ({}, "channel_id"),
        ({"channel_id": "CHANNEL"}, "non_field_errors"),
        ({"channel_id": "CHANNEL", "url": "ftp://example.com/x"}, "url"),
        ({"channel_id": "CHANNEL", "url": "not a url"}, "url"),
        ({"channel_id": "not-a-uuid", "title": "t"}, "channel_id"),
    ],
)
def test_bad_submissions_are_400_problems_naming_the_field_and_create_nothing(client, channel, body, attr):
    body = {k: (str(channel.id) if v == "CHANNEL" else v) for k, v in body.items()}
    response = client.post("/api/contents", body, format="json")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert attr in [e["attr"] for e in response.json()["errors"]]
    assert Content.objects.count() == 0


def test_submitting_to_a_channel_you_cannot_read_is_a_404(channel):
    response = api_client_for(make_user()).post("/api/contents", {"channel_id": str(channel.id), "title": "t"}, format="json")
    assert response.status_code == 404
    assert Content.objects.count() == 0


def test_a_retried_create_with_the_same_idempotency_key_answers_the_first_result(client, channel):
    body = {"channel_id": str(channel.id), "title": "once", "description": "only once"}
    first = client.post("/api/contents", body, format="json", HTTP_IDEMPOTENCY_KEY="key-1")
    again = client.post("/api/contents", body, format="json", HTTP_IDEMPOTENCY_KEY="key-1")
    assert first.status_code == again.status_code == 201
    assert first.json() == again.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Content.objects.count() == 1

    other = client.post("/api/contents", {**body, "title": "different"}, format="json", HTTP_IDEMPOTENCY_KEY="key-1")
    assert other.status_code == 422
    assert Content.objects.count() == 1


def test_an_idempotency_key_is_per_user(client, channel):
    member = make_user("member")
    ChannelMembership.objects.create(channel=channel, user=member)
    body = {"channel_id": str(channel.id), "title": "t"}
    mine = client.post("/api/contents", body, format="json", HTTP_IDEMPOTENCY_KEY="shared")
    theirs = api_client_for(member).post("/api/contents", body, format="json", HTTP_IDEMPOTENCY_KEY="shared")
    assert mine.json()["id"] != theirs.json()["id"]


def test_a_failed_create_is_not_remembered_under_its_key(client, channel):
    bad = client.post("/api/contents", {"channel_id": str(channel.id)}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert bad.status_code == 400
    good = client.post("/api/contents", {"channel_id": str(channel.id), "title": "t"}, format="json", HTTP_IDEMPOTENCY_KEY="k")
    assert good.status_code == 201


# --- lists ------------------------------------------------------------------------------


def test_the_legacy_list_keeps_its_shape_gains_status_and_points_to_its_successor(client, channel):
    done = finish(make_content(channel))
    make_content(channel)

    response = client.get(f"/contents/channel/{channel.id}")

    assert response.status_code == 200
    assert response["Deprecation"].startswith("@")
    assert response["Link"] == f'</api/contents/channel/{channel.id}>; rel="successor-version"'
    assert int(response["X-Last-Event-ID"]) >= 5
    contents = response.json()["contents"]
    assert set(response.json()) == {"contents"}
    by_id = {c["id"]: c for c in contents}
    assert (by_id[str(done.id)]["status"], by_id[str(done.id)]["processing_status"]) == ("complete", "completed")
    assert len(contents) == 2


def test_the_legacy_list_keeps_its_generated_client_method_name(client):
    schema = client.get("/api/schema/?format=json").json()
    operation = schema["paths"]["/contents/channel/{channel_id}"]["get"]
    assert operation["operationId"] == "get_contents_by_channel_contents_channel__channel_id__get"
    assert operation["tags"] == ["contents"]
    assert operation["deprecated"] is True


def test_the_current_list_is_paginated_25_at_a_time(client, channel):
    for _ in range(30):
        make_content(channel)
    first = client.get(f"/api/contents/channel/{channel.id}").json()
    assert len(first["contents"]) == 25
    second = client.get(first["next"]).json()
    assert len(second["contents"]) == 5
    assert second["next"] is None
    assert len({c["id"] for c in first["contents"] + second["contents"]}) == 30


def test_the_current_list_filters_by_status(client, channel):
    done = finish(make_content(channel))
    make_content(channel)
    response = client.get(f"/api/contents/channel/{channel.id}?status=complete")
    assert [c["id"] for c in response.json()["contents"]] == [str(done.id)]


def test_an_unknown_status_filter_is_a_400_naming_the_parameter(client, channel):
    response = client.get(f"/api/contents/channel/{channel.id}?status=finished-ish")
    assert response.status_code == 400
    assert response.json()["errors"][0]["attr"] == "status"


@pytest.mark.parametrize("path", ["/api/contents/channel/{}", "/contents/channel/{}"])
def test_list_queries_do_not_grow_with_the_page(client, channel, path, django_assert_num_queries):
    from django.core.cache import cache

    for _ in range(25):
        finish(make_content(channel))
    cache.clear()
    # cold: the token, channel access, the stream's head, the page; then all from Redis
    with django_assert_num_queries(4):
        assert len(client.get(path.format(channel.id)).json()["contents"]) == 25
    with django_assert_num_queries(0):
        assert len(client.get(path.format(channel.id)).json()["contents"]) == 25


# --- one content, regenerate --------------------------------------------------------------


def test_a_content_is_readable_by_channel_readers_only(client, channel):
    content = make_content(channel)
    assert client.get(f"/api/contents/{content.id}").json()["id"] == str(content.id)
    assert api_client_for(make_user()).get(f"/api/contents/{content.id}").status_code == 404
    assert client.get(f"/api/contents/{uuid.uuid4()}").status_code == 404


def test_regenerating_a_content_still_processing_is_a_409(client, channel):
    content = make_content(channel)
    response = client.post(f"/api/contents/{content.id}/regenerate")
    assert response.status_code == 409
    assert Content.objects.get(id=content.id).version == content.version


def test_a_member_who_did_not_submit_cannot_regenerate(channel):
    member = make_user("member")
    ChannelMembership.objects.create(channel=channel, user=member)
    content = finish(make_content(channel))
    assert api_client_for(member).post(f"/api/contents/{content.id}/regenerate").status_code == 403


# --- channel status -----------------------------------------------------------------------


def test_the_status_answer_splits_processing_completed_and_failed(client, channel):
    processing = make_content(channel)
    generating = moved(content_move(make_content(channel), to="summarizing"))
    completed = finish(make_content(channel))
    failed = finish(make_content(channel), stage="failed")

    response = client.get(f"/api/contents/{channel.id}/status")

    body = response.json()
    assert {c["id"] for c in body["processing_contents"]} == {str(processing.id), str(generating.id)}
    assert body["completed_contents"] == [{"id": str(completed.id), "status": "complete", "processing_status": "completed"}]
    assert body["failed_contents"] == [{"id": str(failed.id), "status": "error", "processing_status": "failed", "error_message": "It broke."}]
    assert (body["has_processing"], body["total_processing"], body["total_completed"], body["total_failed"]) == (True, 2, 1, 1)
    entry = next(c for c in body["processing_contents"] if c["id"] == str(generating.id))
    assert set(entry) == {"id", "status", "processing_status", "progress", "estimated_completion"}
    assert (entry["status"], entry["processing_status"], entry["progress"]) == ("generating", "summarizing", 30)
    assert response["X-Poll-Interval"] == "2"


def test_an_idle_channel_asks_to_be_polled_rarely(client, channel):
    finish(make_content(channel))
    response = client.get(f"/api/contents/{channel.id}/status")
    assert response.json()["has_processing"] is False
    assert response["X-Poll-Interval"] == "30"


def test_an_unchanged_status_is_a_304_without_a_body_and_a_change_is_not(client, channel, django_capture_on_commit_callbacks):
    content = make_content(channel)
    first = client.get(f"/api/contents/{channel.id}/status")
    etag = first["ETag"]

    unchanged = client.get(f"/api/contents/{channel.id}/status", HTTP_IF_NONE_MATCH=etag)
    assert unchanged.status_code == 304
    assert unchanged.content == b""
    assert unchanged["X-Poll-Interval"] == "2"

    with django_capture_on_commit_callbacks(execute=True):  # the change commits
        content_move(content, to="summarizing")
    changed = client.get(f"/api/contents/{channel.id}/status", HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200
    assert changed["ETag"] != etag
    assert changed.json()["processing_contents"][0]["processing_status"] == "summarizing"


def test_finished_lists_are_capped_at_100_while_totals_stay_exact(client, channel):
    for _ in range(105):
        finish(make_content(channel))
    body = client.get(f"/api/contents/{channel.id}/status").json()
    assert len(body["completed_contents"]) == 100
    assert body["total_completed"] == 105


def test_since_limits_finished_lists_to_what_finished_after_it(client, channel):
    old, new = finish(make_content(channel)), finish(make_content(channel))
    Content.objects.filter(id=old.id).update(finished_at=timezone.now() - timedelta(hours=2))
    since = (timezone.now() - timedelta(hours=1)).isoformat()
    body = client.get(f"/api/contents/{channel.id}/status", {"since": since}).json()
    assert [c["id"] for c in body["completed_contents"]] == [str(new.id)]
    assert body["total_completed"] == 2


def test_the_status_answer_costs_the_same_queries_for_5_or_150_contents(
    client, channel, django_assert_num_queries, django_capture_on_commit_callbacks
):
    for _ in range(5):
        finish(make_content(channel))
    # cold: the token, channel access, the stream's head, the totals, completed (the
    # processing and failed lists are not read: their totals are 0)
    with django_assert_num_queries(5):
        client.get(f"/api/contents/{channel.id}/status")
    with django_capture_on_commit_callbacks(execute=True):  # committed: the head moves on
        for _ in range(145):
            make_content(channel)
    # the token, access and head come from Redis; the changed channel is read again:
    # the totals, processing, completed
    with django_assert_num_queries(3):
        assert client.get(f"/api/contents/{channel.id}/status").json()["total_processing"] == 145


# --- batch status -------------------------------------------------------------------------


def batch(client, ids):
    return client.post("/api/contents/status/batch", {"content_ids": ids}, format="json")


def test_batch_status_answers_each_visible_content_once(client, channel):
    content = moved(content_move(make_content(channel), to="summarizing"))
    response = batch(client, [str(content.id), str(content.id)])
    assert response.status_code == 200
    assert response.json() == {
        "statuses": [{
            "id": str(content.id), "status": "generating", "processing_status": "summarizing", "progress": 30,
            "estimated_completion": None, "error_message": None, "version": 2,
        }],
        "not_found": [],
    }
    assert response["X-Poll-Interval"] == "2"


def test_batch_status_lists_unknown_and_unauthorised_ids_alike_in_not_found(client, channel):
    mine = make_content(channel)
    theirs = make_content()
    unknown = uuid.uuid4()
    body = batch(client, [str(theirs.id), str(mine.id), str(unknown)]).json()
    assert [s["id"] for s in body["statuses"]] == [str(mine.id)]
    assert body["not_found"] == [str(theirs.id), str(unknown)]


def test_an_empty_batch_is_an_empty_answer(client):
    response = batch(client, [])
    assert response.status_code == 200
    assert response.json() == {"statuses": [], "not_found": []}


def test_more_than_100_ids_is_a_400_that_names_the_field_and_the_limit(client):
    response = batch(client, [str(uuid.uuid4()) for _ in range(101)])
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["attr"] == "content_ids"
    assert "100" in error["detail"]


def test_a_malformed_id_is_a_400_that_quotes_the_id(client, channel):
    response = batch(client, [str(make_content(channel).id), "definitely-not-a-uuid"])
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["attr"] == "content_ids.1"
    assert "definitely-not-a-uuid" in error["detail"]


@pytest.mark.parametrize("body", [{"content_ids": "abc"}, {"content_ids": [1, 2]}, {}])
def test_a_batch_that_is_not_a_list_of_ids_is_a_400(client, body):
    response = client.post("/api/contents/status/batch", body, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["attr"].startswith("content_ids")


@pytest.mark.parametrize("count", [1, 100])
def test_batch_status_costs_a_fixed_number_of_queries(client, channel, count, django_assert_num_queries):
    ids = [str(make_content(channel).id) for _ in range(count)]
    # cold: the token, one select
    with django_assert_num_queries(2):
        response = batch(client, ids)
    assert len(response.json()["statuses"]) == count
    # the contents' channel is now known: its head (from the database, once), one select
    with django_assert_num_queries(2):
        batch(client, ids)
    with django_assert_num_queries(0):
        assert len(batch(client, ids).json()["statuses"]) == count


# --- around ---------------------------------------------------------------------------------


def test_healthz_says_the_services_answer(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "redis": "ok", "queue": "ok"}


def test_healthz_names_what_is_down(client, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = client.get("/healthz")
    assert response.status_code == 503
    assert "redis" in response.json()["down"]


def test_the_schema_documents_problem_details_and_the_status_enums(client):
    schema = client.get("/api/schema/?format=json").json()
    components = schema["components"]["schemas"]
    assert set(components["ContentStatusEnum"]["enum"]) == {"idle", "generating", "complete", "error"}
    assert set(components["ProcessingStatusEnum"]["enum"]) == {"uploading", "summarizing", "qa_generating", "completed", "failed"}
    batch_op = schema["paths"]["/api/contents/status/batch"]["post"]
    assert "application/problem+json" in batch_op["responses"]["400"]["content"]
    assert client.get("/api/docs/").status_code == 200


def test_an_unknown_path_is_a_problem_too(client):
    response = client.get("/api/nothing-here")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["errors"][0]["code"] == "not_found"


def test_the_schema_is_valid_openapi_without_warnings():
    from django.core.management import call_command

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", "/dev/null")


def test_only_the_owner_removes_members_and_removal_ends_reading(client, channel):
    member, other = make_user("member"), make_user("other")
    ChannelMembership.objects.create(channel=channel, user=member)
    ChannelMembership.objects.create(channel=channel, user=other)
    assert api_client_for(other).delete(f"/api/channels/{channel.id}/members/{member.id}").status_code == 403

    assert client.delete(f"/api/channels/{channel.id}/members/{member.id}").status_code == 204
    assert api_client_for(member).get(f"/api/contents/channel/{channel.id}").status_code == 404
    assert client.delete(f"/api/channels/{channel.id}/members/{member.id}").status_code == 404


def test_a_retry_while_the_first_request_is_still_running_is_a_409_with_retry_after(client, channel):
    from datetime import timedelta

    from core.models import IdempotencyRecord

    body = {"channel_id": str(channel.id), "title": "slow"}
    client.post("/api/contents", body, format="json", HTTP_IDEMPOTENCY_KEY="busy")
    IdempotencyRecord.objects.update(status_code=None, response_body=None)  # as if still running

    busy = client.post("/api/contents", body, format="json", HTTP_IDEMPOTENCY_KEY="busy")
    assert busy.status_code == 409 and busy["Retry-After"] == "1"

    IdempotencyRecord.objects.update(created_at=timezone.now() - timedelta(minutes=10))  # its request died
    revived = client.post("/api/contents", body, format="json", HTTP_IDEMPOTENCY_KEY="busy")
    assert revived.status_code == 201
    assert Content.objects.count() == 2


def test_too_many_failed_logins_are_a_429_problem_with_retry_after(owner, settings, monkeypatch):
    """More in tests/test_login_throttle.py."""
    from rest_framework.test import APIClient

    import accounts.login_throttle
    from tests.helpers import MidWindowClock

    monkeypatch.setattr(accounts.login_throttle, "time", MidWindowClock())

    settings.LOGIN_FAILURES_PER_ACCOUNT = 10
    client = APIClient()
    statuses = [client.post("/v1/auth/token", {"username": "owner", "password": "wrong"}, format="json").status_code for _ in range(12)]
    assert statuses == [401] * 9 + [429] * 3
    throttled = client.post("/v1/auth/token", {"username": "owner", "password": "pw-owner"}, format="json")
    assert throttled.status_code == 429
    assert int(throttled["Retry-After"]) > 0
    assert throttled["Content-Type"] == "application/problem+json"
    assert throttled.json()["errors"][0]["code"] == "throttled"
