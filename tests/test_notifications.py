"""Notifications: created by what happens, once, grouped, marked read in one UPDATE, pushed."""

import json
import uuid

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from aijobs.models import AIJob
from aijobs.services import job_cancel, job_create
from aijobs.services import job_move as job_transition
from contents.services import content_move as content_transition
from moderation.services import block_users
from notifications.models import Notification
from tests.factories import make_channel, make_content, moved
from tests.helpers import api_client_for, make_user
from tests.media import make_video
from videos.services import video_comment, video_like, video_upload

VIDEO = make_video(seconds=1)
pytestmark = pytest.mark.django_db


@pytest.fixture
def owner():
    return make_user("owner")


@pytest.fixture
def video(owner):
    return video_upload(owner=owner, file=SimpleUploadedFile("v.mp4", VIDEO), title="My clip")


def notifications_of(user):
    return list(Notification.objects.filter(recipient=user).order_by("created_at"))


def test_a_like_notifies_the_owner_once_and_a_burst_is_one_growing_row(owner, video):
    fans = [make_user() for _ in range(5)]
    for fan in fans:
        video_like(video=video, user=fan)
    video_like(video=video, user=fans[0])  # a repeat like adds nothing

    (notification,) = notifications_of(owner)
    assert (notification.type, notification.count, notification.actor_id) == ("like", 5, fans[-1].id)
    assert notification.data == {"video_id": str(video.id), "title": "My clip"}


def test_a_like_after_the_group_was_read_starts_a_new_row(owner, video):
    video_like(video=video, user=make_user())
    Notification.objects.update(is_read=True)
    video_like(video=video, user=make_user())
    assert [(n.is_read, n.count) for n in notifications_of(owner)] == [(True, 1), (False, 1)]


def test_a_comment_and_a_remix_notify_the_videos_owner(owner, video):
    commenter, remixer = make_user(), make_user()
    comment = video_comment(video=video, user=commenter, text="Nice!")
    remix = video_upload(owner=remixer, file=SimpleUploadedFile("r.mp4", VIDEO), title="Remix", remix_of=video)

    by_type = {n.type: n for n in notifications_of(owner)}
    assert set(by_type) == {"comment", "remix"}
    assert (by_type["comment"].actor_id, by_type["comment"].data["comment_id"], by_type["comment"].data["text"]) == (commenter.id, str(comment.id), "Nice!")
    assert (by_type["remix"].actor_id, by_type["remix"].data["remix_id"]) == (remixer.id, str(remix.id))


def test_your_own_actions_notify_nobody(owner, video):
    video_like(video=video, user=owner)
    video_comment(video=video, user=owner, text="my own")
    video_upload(owner=owner, file=SimpleUploadedFile("r.mp4", VIDEO), title="Self remix", remix_of=video)
    assert notifications_of(owner) == []


def test_a_blocked_users_likes_comments_and_remixes_notify_nobody(owner, video):
    troll = make_user("troll")
    block_users(blocker=owner, user_ids=[troll.id])
    video_like(video=video, user=troll)
    video_comment(video=video, user=troll, text="hi")
    video_upload(owner=troll, file=SimpleUploadedFile("r.mp4", VIDEO), title="Remix", remix_of=video)
    assert notifications_of(owner) == []


def test_a_finished_ai_job_notifies_its_owner(owner, video):
    job = job_create(owner=owner, kind="glitch", video=video, params={})
    job_cancel(AIJob.objects.select_related("owner").get(id=job.id))
    started = job_create(owner=owner, kind="glitch", video=video, params={})
    started = moved(job_transition(AIJob.objects.select_related("owner").get(id=started.id), to="processing"))
    job_transition(started, to="completed")

    by_type = {n.type: n for n in notifications_of(owner)}
    assert set(by_type) == {"ai_job_failed", "ai_job_completed"}
    assert by_type["ai_job_failed"].data["error"] == "Cancelled"
    assert by_type["ai_job_completed"].data["job_id"] == str(started.id)
    assert by_type["ai_job_completed"].actor_id is None


def test_a_contents_ai_result_notifies_its_provider():
    provider = make_user("provider")
    channel = make_channel(owner=provider)
    done = make_content(channel)
    for stage in ("summarizing", "qa_generating", "completed"):
        done = moved(content_transition(done, to=stage))
    failed = content_transition(make_content(channel), to="failed", error_message="Could not fetch")

    by_type = {n.type: n for n in notifications_of(provider)}
    assert set(by_type) == {"content_complete", "content_error"}
    assert by_type["content_complete"].data["content_id"] == str(done.id)
    assert by_type["content_error"].data["error_message"] == "Could not fetch"
    assert failed is not None


# --- the API -----------------------------------------------------------------------------


def test_the_list_is_the_callers_own_newest_first_with_unread_count(owner, video):
    video_comment(video=video, user=make_user(), text="first")
    video_comment(video=video, user=make_user(), text="second")
    video_comment(video=make_video_of(make_user()), user=owner, text="to someone else")
    client = api_client_for(owner)

    body = client.get("/v1/notifications/").json()
    assert [n["data"]["text"] for n in body["results"]] == ["second", "first"]
    assert body["unread_count"] == 2
    assert set(body["results"][0]) == {"id", "type", "actor_id", "data", "is_read", "created_at"}

    Notification.objects.filter(data__text="first").update(is_read=True)
    assert [n["data"]["text"] for n in client.get("/v1/notifications/?unread=true").json()["results"]] == ["second"]
    assert client.get("/v1/notifications/?unread=maybe").status_code == 400


def make_video_of(user):
    return video_upload(owner=user, file=SimpleUploadedFile("o.mp4", VIDEO), title="other")


def test_mark_read_counts_only_the_callers_unread_ones_and_is_idempotent(owner, video):
    for text in ("a", "b", "c"):
        video_comment(video=video, user=make_user(), text=text)
    mine = [str(n.id) for n in notifications_of(owner)]
    already_read = mine[0]
    Notification.objects.filter(id=already_read).update(is_read=True)
    someone_else = make_user()
    other_video = make_video_of(someone_else)
    video_comment(video=other_video, user=owner, text="x")
    theirs = str(Notification.objects.get(recipient=someone_else).id)
    unknown = str(uuid.uuid4())
    client = api_client_for(owner)

    first = client.post("/v1/notifications/batch-mark-read", {"notification_ids": [*mine, theirs, unknown]}, format="json").json()
    again = client.post("/v1/notifications/batch-mark-read", {"notification_ids": mine}, format="json").json()

    assert (first["marked_count"], first["success"], first["not_found"], first["unread_count"]) == (2, True, [theirs, unknown], 0)
    assert (again["marked_count"], again["success"], again["not_found"]) == (0, True, [])
    assert Notification.objects.get(id=theirs).is_read is False


def test_mark_all_read_and_mark_read_before_a_time(owner, video):
    for text in ("a", "b"):
        video_comment(video=video, user=make_user(), text=text)
    client = api_client_for(owner)
    cutoff = Notification.objects.get(data__text="a").created_at.isoformat()
    assert client.post("/v1/notifications/batch-mark-read", {"before": cutoff}, format="json").json()["marked_count"] == 1
    assert client.post("/v1/notifications/batch-mark-read", {"all": True}, format="json").json()["marked_count"] == 1
    for body in ({}, {"all": True, "notification_ids": []}, {"all": False}):
        assert client.post("/v1/notifications/batch-mark-read", body, format="json").status_code == 400


@pytest.mark.parametrize("count", [1, 100])
def test_mark_read_costs_a_fixed_number_of_queries(owner, count, django_assert_num_queries):
    from django.utils import timezone

    Notification.objects.bulk_create([Notification(recipient=owner, type="comment", data={}, created_at=timezone.now()) for _ in range(count)])
    ids = [str(i) for i in Notification.objects.values_list("id", flat=True)]
    client = api_client_for(owner)
    # knox token, savepoint pair, one UPDATE, unread count for the push,
    # stream id + event row, the not_found select, the answer's unread count
    with django_assert_num_queries(9):
        response = client.post("/v1/notifications/batch-mark-read", {"notification_ids": ids}, format="json")
    assert response.json()["marked_count"] == count


def test_mark_read_enforces_the_batch_rules(owner):
    client = api_client_for(owner)
    too_many = client.post("/v1/notifications/batch-mark-read", {"notification_ids": [str(uuid.uuid4()) for _ in range(101)]}, format="json")
    assert too_many.status_code == 400 and "100" in too_many.json()["errors"][0]["detail"]
    malformed = client.post("/v1/notifications/batch-mark-read", {"notification_ids": ["x-1"]}, format="json")
    assert malformed.status_code == 400 and "x-1" in malformed.json()["errors"][0]["detail"]
    empty = client.post("/v1/notifications/batch-mark-read", {"notification_ids": []}, format="json").json()
    assert (empty["marked_count"], empty["success"], empty["not_found"]) == (0, True, [])


@pytest.mark.django_db(transaction=True)
def test_a_notification_arrives_on_the_owners_websocket():
    from websockets.sync.client import connect

    from tests.live import Daphne

    owner = make_user("owner")
    video = video_upload(owner=owner, file=SimpleUploadedFile("v.mp4", VIDEO), title="Clip")
    client = api_client_for(owner)
    server = Daphne()
    try:
        ticket = client.post("/v1/realtime/tickets").json()["ticket"]
        with connect(server.ws_url(f"/v1/ws?ticket={ticket}"), origin=server.origin) as ws:
            ws.send(json.dumps({"type": "subscribe"}))
            assert json.loads(ws.recv(timeout=10))["type"] == "subscribed"
            fan = make_user("fan")
            api_client_for(fan).post(f"/v1/videos/{video.id}/like")
            pushed = json.loads(ws.recv(timeout=10))
            client.post("/v1/notifications/batch-mark-read", {"all": True}, format="json")
            read = json.loads(ws.recv(timeout=10))
    finally:
        server.stop()
    assert pushed["type"] == "notification"
    assert (pushed["data"]["type"], pushed["data"]["actor_id"], pushed["data"]["unread_count"]) == ("like", str(fan.id), 1)
    assert (read["data"]["type"], read["data"]["unread_count"]) == ("read", 0)
