"""Moderation: staff-only batch delete that reaches every read path, blocks and their
effects, and the same actions in the Django admin."""

import json
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import Block
from moderation.models import Suspension, VideoDeletion
from moderation.services import purge_deleted_video_files
from notifications.models import Notification
from tests.helpers import api_client_for, make_user
from tests.media import make_video
from videos.models import Video
from videos.services import video_comment, video_upload, video_view, video_views_flush

VIDEO = make_video(seconds=1)
pytestmark = pytest.mark.django_db


def upload(owner, title="clip"):
    return video_upload(owner=owner, file=SimpleUploadedFile("v.mp4", VIDEO), title=title)


@pytest.fixture
def staff():
    return make_user("staff", is_staff=True, is_superuser=True)


def test_batch_delete_is_staff_only(staff):
    video = upload(make_user())
    response = api_client_for(make_user()).post("/v1/admin/videos/batch-delete", {"video_ids": [str(video.id)], "reason": "x"}, format="json")
    assert response.status_code == 403
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["errors"][0]["code"] == "permission_denied"
    assert Video.objects.visible().filter(id=video.id).exists()


def test_a_deleted_video_is_gone_from_every_read_path_and_audited(staff):
    owner = make_user("owner")
    video, kept = upload(owner, "bad"), upload(owner, "good")
    video_view(video_id=video.id, user=owner)
    unknown = str(uuid.uuid4())

    response = api_client_for(staff).post(
        "/v1/admin/videos/batch-delete", {"video_ids": [str(video.id), unknown], "reason": "Inappropriate content"}, format="json"
    )

    assert response.json() == {"deleted_count": 1, "deleted": [str(video.id)], "not_found": [unknown]}
    anyone = APIClient()
    assert anyone.get(f"/v1/videos/{video.id}").status_code == 404
    assert [v["title"] for v in anyone.get("/v1/videos/feed").json()["results"]] == ["good"]
    from django.core.cache import cache

    cache.clear()
    assert [v["title"] for v in anyone.get("/v1/videos/trending").json()["results"]] == []
    metadata = anyone.post("/v1/videos/batch-metadata", {"video_ids": [str(video.id), str(kept.id)]}, format="json").json()
    assert metadata["not_found"] == [str(video.id)] and list(metadata["videos"]) == [str(kept.id)]
    audit = VideoDeletion.objects.get(video=video)
    assert (audit.reason, audit.deleted_by, audit.files_removed_at) == ("Inappropriate content", staff, None)
    again = api_client_for(staff).post("/v1/admin/videos/batch-delete", {"video_ids": [str(video.id)], "reason": "again"}, format="json")
    assert again.json()["not_found"] == [str(video.id)]


def test_files_are_removed_only_after_the_grace_period(staff):
    video = upload(make_user())
    path = Path(settings.MEDIA_ROOT) / video.file.name
    api_client_for(staff).post("/v1/admin/videos/batch-delete", {"video_ids": [str(video.id)], "reason": "spam"}, format="json")

    assert purge_deleted_video_files() == 0
    assert path.exists()
    later = timezone.now() + timedelta(hours=settings.MODERATION_FILE_GRACE_HOURS, minutes=1)
    assert purge_deleted_video_files(now=later) == 1
    assert not path.exists()
    assert VideoDeletion.objects.get(video=video).files_removed_at is not None


# --- blocks ----------------------------------------------------------------------------------


def test_blocking_is_idempotent_listed_and_undone():
    me, a, b = make_user("me"), make_user("a"), make_user("b")
    client = api_client_for(me)
    first = client.post("/v1/blocks/batch", {"user_ids": [str(a.id), str(b.id)]}, format="json").json()
    again = client.post("/v1/blocks/batch", {"user_ids": [str(a.id)]}, format="json").json()
    assert set(first["blocked"]) == {str(a.id), str(b.id)} and first["not_found"] == []
    assert again == {"blocked": [str(a.id)], "not_found": []}
    assert Block.objects.filter(blocker=me).count() == 2
    assert {u["user_id"] for u in client.get("/v1/blocks").json()["results"]} == {str(a.id), str(b.id)}
    assert client.delete(f"/v1/blocks/{a.id}").status_code == 204
    assert client.delete(f"/v1/blocks/{a.id}").status_code == 404
    assert [u["user_id"] for u in client.get("/v1/blocks").json()["results"]] == [str(b.id)]


def test_blocking_never_tells_whether_a_user_id_exists():
    """Before: an existing id came back in `blocked`, an unknown one in `not_found`, and
    the list showed the blocked user's username. Now both ids get the same answer, the
    same place in the list (id and time only) and the same unblock."""
    me, real = make_user("me"), make_user("someone-real")
    unknown = str(uuid.uuid4())
    client = api_client_for(me)
    answers = {uid: client.post("/v1/blocks/batch", {"user_ids": [uid]}, format="json") for uid in (str(real.id), unknown)}
    for uid, answer in answers.items():
        assert (answer.status_code, answer.json()) == (200, {"blocked": [uid], "not_found": []})
    listed = client.get("/v1/blocks").json()["results"]
    assert {entry["user_id"] for entry in listed} == {str(real.id), unknown}
    assert all(set(entry) == {"user_id", "created_at"} for entry in listed), listed
    assert "someone-real" not in json.dumps(listed)
    assert [client.delete(f"/v1/blocks/{uid}").status_code for uid in (str(real.id), unknown)] == [204, 204]
    assert [client.delete(f"/v1/blocks/{uid}").status_code for uid in (str(real.id), unknown)] == [404, 404]


def test_you_cannot_block_yourself():
    me = make_user("me")
    response = api_client_for(me).post("/v1/blocks/batch", {"user_ids": [str(me.id)]}, format="json")
    assert response.status_code == 400
    assert str(me.id) in response.json()["errors"][0]["detail"]
    assert not Block.objects.exists()


def test_a_blocked_users_videos_and_comments_stop_reaching_the_blocker():
    me, troll, friend = make_user("me"), make_user("troll"), make_user("friend")
    troll_video, friend_video = upload(troll, "troll video"), upload(friend, "friend video")
    for video in (troll_video, friend_video):
        video_view(video_id=video.id, user=friend)
    video_comment(video=friend_video, user=troll, text="troll comment")
    video_comment(video=friend_video, user=friend, text="friend comment")
    client = api_client_for(me)
    client.post("/v1/blocks/batch", {"user_ids": [str(troll.id)]}, format="json")
    video_views_flush()  # trending reads the View rows the flush writes

    assert [v["title"] for v in client.get("/v1/videos/feed").json()["results"]] == ["friend video"]
    assert [v["title"] for v in client.get("/v1/videos/trending").json()["results"]] == ["friend video"]
    assert [c["text"] for c in client.get(f"/v1/videos/{friend_video.id}/comments").json()["results"]] == ["friend comment"]
    # others still see everything
    assert len(api_client_for(friend).get("/v1/videos/feed").json()["results"]) == 2
    my_video = upload(me, "mine")
    api_client_for(troll).post(f"/v1/videos/{my_video.id}/like")
    assert not Notification.objects.filter(recipient=me).exists()


# --- the admin --------------------------------------------------------------------------------


def admin_client(staff) -> Client:
    client = Client()
    client.force_login(staff)
    return client


def test_the_admin_deletes_selected_videos_after_asking_for_a_reason(staff):
    videos = [upload(make_user(), f"v{i}") for i in range(2)]
    client = admin_client(staff)
    selection = {"action": "delete_videos_with_reason", "_selected_action": [str(v.id) for v in videos]}

    asked = client.post("/admin/videos/video/", selection)
    assert asked.status_code == 200
    assert b"Why are these videos deleted?" in asked.content
    assert Video.objects.visible().count() == 2

    done = client.post("/admin/videos/video/", {**selection, "apply": "1", "reason": "Copyright"})
    assert done.status_code == 302
    assert Video.objects.visible().count() == 0
    assert set(VideoDeletion.objects.values_list("reason", flat=True)) == {"Copyright"}


def test_the_admin_blocks_users_on_behalf_of_a_user(staff):
    victim, spammers = make_user("victim"), [make_user(f"spam{i}") for i in range(2)]
    client = admin_client(staff)
    selection = {"action": "block_users", "_selected_action": [str(u.id) for u in spammers]}
    assert b"Block these users" in client.post("/admin/accounts/user/", selection).content
    response = client.post("/admin/accounts/user/", {**selection, "apply": "1", "scope": "user", "on_behalf_of": "victim"})
    assert response.status_code == 302
    assert set(Block.objects.filter(blocker=victim).values_list("blocked__username", flat=True)) == {"spam0", "spam1"}


def test_the_admin_suspends_users_site_wide(staff, django_capture_on_commit_callbacks):
    spammer = make_user("spammer")
    token_client = api_client_for(spammer)
    assert token_client.get("/v1/credits").status_code == 200
    client = admin_client(staff)
    with django_capture_on_commit_callbacks(execute=True):  # the suspension commits
        response = client.post("/admin/accounts/user/", {
            "action": "block_users", "_selected_action": [str(spammer.id)], "apply": "1", "scope": "site", "reason": "spam",
        })
    assert response.status_code == 302
    assert token_client.get("/v1/credits").status_code == 401
    login = APIClient().post("/v1/auth/token", {"username": "spammer", "password": "pw-spammer"}, format="json")
    assert login.status_code == 401
    assert Suspension.objects.get(user=spammer).reason == "spam"


@pytest.mark.parametrize("path", ["/admin/videos/video/", "/admin/accounts/user/", "/admin/moderation/videodeletion/", "/admin/aijobs/aijob/"])
def test_admin_lists_cost_the_same_queries_for_few_or_many_rows(staff, path):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    client = admin_client(staff)
    owner = make_user("bulk")

    def add_rows(n):
        videos = Video.objects.bulk_create([
            Video(owner=make_user(), title=f"v{i}", file="videos/x.mp4", duration_seconds=1, width=1, height=1, codec="h264", size_bytes=1)
            for i in range(n)
        ])
        VideoDeletion.objects.bulk_create([VideoDeletion(video=v, reason="r", deleted_by=staff) for v in videos[: n // 2]])
        from aijobs.models import AIJob

        AIJob.objects.bulk_create([AIJob(owner=owner, kind="glitch", video=v, cost=10) for v in videos])

    add_rows(3)
    with CaptureQueriesContext(connection) as few:
        assert client.get(path).status_code == 200
    add_rows(30)
    with CaptureQueriesContext(connection) as many:
        assert client.get(path).status_code == 200
    assert len(many) == len(few), f"{path}: {len(few)} queries for few rows, {len(many)} for many"
    assert client.get(path + "?q=v1").status_code == 200
