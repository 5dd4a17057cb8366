"""Videos: upload validated by decoding, exact counters under concurrency, batch metadata."""

import functools
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from tests.helpers import api_client_for, make_user, run_concurrently
from tests.media import make_video
from videos.models import Video
from videos.services import video_like, video_upload, video_view, video_views_flush

VIDEO = make_video(seconds=1)


def upload(client, data=VIDEO, name="clip.mp4", **fields):
    return client.post("/v1/videos", {"file": SimpleUploadedFile(name, data, content_type="video/mp4"), "title": "Clip", **fields}, format="multipart")


def stored_files() -> set[str]:
    root = Path(settings.MEDIA_ROOT)
    return {str(p) for p in root.rglob("*") if p.is_file()} if root.exists() else set()


@pytest.fixture
def owner(db):
    return make_user("owner")


@pytest.fixture
def video(owner):
    return video_upload(owner=owner, file=SimpleUploadedFile("v.mp4", VIDEO), title="Clip")


@pytest.mark.django_db
def test_a_small_video_is_uploaded_decoded_and_thumbnailed(owner):
    response = upload(api_client_for(owner))
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["width"], body["height"], body["codec"]) == (160, 120, "h264")
    assert 0.8 <= body["duration_seconds"] <= 1.2
    assert body["size_bytes"] == len(VIDEO)
    assert body["file_url"].startswith("/media/videos/") and body["thumbnail_url"].endswith(".jpg")
    assert APIClient().get(body["file_url"]).status_code == 200
    assert {k: body[k] for k in ("view_count", "like_count", "comment_count", "remix_count", "glitch_count")} == dict.fromkeys(
        ("view_count", "like_count", "comment_count", "remix_count", "glitch_count"), 0
    )


@pytest.mark.django_db
@pytest.mark.parametrize("data", [b"definitely not a video", b"\x89PNG\r\n\x1a\n" + b"\x00" * 100, b""])
def test_anything_that_is_not_a_video_is_a_400_and_stores_nothing(owner, data):
    before = stored_files()
    response = upload(api_client_for(owner), data=data, name="fake.mp4")
    assert response.status_code == 400
    assert response.json()["errors"][0]["attr"] == "file"
    assert Video.objects.count() == 0
    assert stored_files() == before


@pytest.mark.django_db
def test_an_upload_over_the_size_cap_is_refused(owner, settings):
    settings.VIDEO_MAX_UPLOAD_BYTES = 100
    before = stored_files()
    response = upload(api_client_for(owner))
    assert response.status_code == 413, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert "limit is 100" in response.json()["errors"][0]["detail"]
    assert stored_files() == before and not Video.objects.exists()


@pytest.mark.django_db
def test_a_remix_upload_counts_on_its_source(owner, video):
    response = upload(api_client_for(owner), remix_of=str(video.id))
    assert response.json()["remix_of"] == str(video.id)
    video.refresh_from_db()
    assert video.remix_count == 1


@pytest.mark.django_db
def test_a_retried_upload_with_the_same_idempotency_key_stores_one_video(owner):
    client = api_client_for(owner)
    first = client.post("/v1/videos", {"file": SimpleUploadedFile("a.mp4", VIDEO), "title": "Once"}, format="multipart", HTTP_IDEMPOTENCY_KEY="up-1")
    again = client.post("/v1/videos", {"file": SimpleUploadedFile("a.mp4", VIDEO), "title": "Once"}, format="multipart", HTTP_IDEMPOTENCY_KEY="up-1")
    assert first.json()["id"] == again.json()["id"]
    assert Video.objects.count() == 1


@pytest.mark.django_db
def test_a_double_like_counts_once_and_unlike_takes_it_back(owner, video):
    client = api_client_for(make_user())
    assert client.post(f"/v1/videos/{video.id}/like").json() == {"liked": True, "like_count": 1}
    assert client.post(f"/v1/videos/{video.id}/like").json() == {"liked": True, "like_count": 1}
    assert client.delete(f"/v1/videos/{video.id}/like").json() == {"liked": False, "like_count": 0}
    assert client.delete(f"/v1/videos/{video.id}/like").json() == {"liked": False, "like_count": 0}


@pytest.mark.django_db(transaction=True)
def test_50_concurrent_likes_from_50_users_count_exactly_50():
    video = video_upload(owner=make_user("owner"), file=SimpleUploadedFile("v.mp4", VIDEO), title="Clip")
    users = [make_user() for _ in range(50)]
    # each user also likes a second time: still one like each
    tasks: list[Callable[[], Any]] = [functools.partial(video_like, video=video, user=u) for u in [*users, *users[:10]]]
    run_concurrently(tasks, workers=30)
    video.refresh_from_db()
    assert video.like_count == 50
    assert video.likes.count() == 50


@pytest.mark.django_db
def test_comments_are_counted_and_listed_newest_first(owner, video):
    client = api_client_for(make_user())
    for text in ("first", "second"):
        assert client.post(f"/v1/videos/{video.id}/comments", {"text": text}, format="json").status_code == 201
    listed = client.get(f"/v1/videos/{video.id}/comments").json()["results"]
    assert [c["text"] for c in listed] == ["second", "first"]
    assert client.get(f"/v1/videos/{video.id}").json()["comment_count"] == 2


@pytest.mark.django_db
def test_the_feed_is_newest_first_and_paginated(owner):
    videos = [video_upload(owner=owner, file=SimpleUploadedFile("v.mp4", VIDEO), title=f"v{i}") for i in range(3)]
    client = APIClient()
    first = client.get("/v1/videos/feed?page_size=2").json()
    second = client.get(first["next"]).json()
    assert [v["title"] for v in first["results"] + second["results"]] == ["v2", "v1", "v0"]
    assert len(videos) == 3


@pytest.mark.django_db
def test_trending_orders_by_recent_views(owner):
    quiet, popular = (video_upload(owner=owner, file=SimpleUploadedFile("v.mp4", VIDEO), title=t) for t in ("quiet", "popular"))
    client = APIClient()
    for n in range(3):
        APIClient(REMOTE_ADDR=f"10.0.1.{n}").post(f"/v1/videos/{popular.id}/view")
    APIClient(REMOTE_ADDR="10.0.0.2").post(f"/v1/videos/{quiet.id}/view")
    video_views_flush()
    assert [v["title"] for v in client.get("/v1/videos/trending").json()["results"]] == ["popular", "quiet"]


# --- batch metadata ------------------------------------------------------------------------


@pytest.mark.django_db
def test_batch_metadata_answers_an_anonymous_caller_like_the_seed(video):
    video_view(video_id=video.id, user=make_user())
    response = APIClient().post("/v1/videos/batch-metadata", {"video_ids": [str(video.id), str(video.id), str(uuid.uuid4())]}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["videos"] == {str(video.id): {"view_count": 1, "like_count": 0, "comment_count": 0, "remix_count": 0, "glitch_count": 0}}
    assert len(body["not_found"]) == 1
    assert response["X-Poll-Interval"] == "5"


@pytest.mark.django_db
def test_batch_metadata_answers_a_session_caller_without_a_csrf_token(owner, video):
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(owner)
    response = browser.post("/v1/videos/batch-metadata", {"video_ids": [str(video.id)]}, content_type="application/json")
    assert response.status_code == 200
    assert str(video.id) in response.json()["videos"]


@pytest.mark.django_db
def test_batch_metadata_enforces_the_batch_rules():
    client = APIClient()
    assert client.post("/v1/videos/batch-metadata", {"video_ids": []}, format="json").json() == {"videos": {}, "not_found": []}
    too_many = client.post("/v1/videos/batch-metadata", {"video_ids": [str(uuid.uuid4()) for _ in range(101)]}, format="json")
    assert too_many.status_code == 400 and "100" in too_many.json()["errors"][0]["detail"]
    malformed = client.post("/v1/videos/batch-metadata", {"video_ids": ["nope"]}, format="json")
    assert malformed.status_code == 400 and "nope" in malformed.json()["errors"][0]["detail"]


@pytest.mark.django_db
@pytest.mark.parametrize("count", [1, 100])
def test_batch_metadata_costs_one_query_for_any_count(owner, count, django_assert_num_queries):
    Video.objects.bulk_create([
        Video(owner=owner, title=f"v{i}", file="videos/x.mp4", duration_seconds=1, width=1, height=1, codec="h264", size_bytes=1)
        for i in range(count)
    ])
    ids = [str(i) for i in Video.objects.values_list("id", flat=True)]
    with django_assert_num_queries(1):
        response = APIClient().post("/v1/videos/batch-metadata", {"video_ids": ids}, format="json")
    assert len(response.json()["videos"]) == count
