"""The user stream's snapshots (`GET /v1/ai/jobs`, `GET /v1/notifications/`) say where
the stream stood when they were read, as a channel's list and status do: a client
subscribes to `WS /v1/ws` with that id as `since` and misses nothing in between."""

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from aijobs.services import job_create
from realtime.streams import current_seq, user_stream
from tests.helpers import api_client_for, make_user
from tests.media import make_video
from videos.services import video_comment, video_upload

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner():
    return make_user("owner")


@pytest.fixture
def video(owner):
    return video_upload(owner=owner, file=SimpleUploadedFile("v.mp4", make_video(seconds=1)), title="Clip")


@pytest.mark.parametrize("path", ["/v1/ai/jobs", "/v1/notifications/"])
def test_a_user_snapshot_carries_the_user_streams_last_event_id(owner, video, path, django_capture_on_commit_callbacks):
    client = api_client_for(owner)
    assert client.get(path)["X-Last-Event-ID"] == "0", "no event yet"

    with django_capture_on_commit_callbacks(execute=True):
        job_create(owner=owner, kind="glitch", video=video, params={})  # an ai_job_update
        video_comment(video=video, user=make_user(), text="nice")  # a notification
    stream = user_stream(owner.id)
    assert current_seq(stream) == 2
    response = client.get(path)
    assert response.status_code == 200
    assert response["X-Last-Event-ID"] == "2"

    # Another user's events are another stream: they do not move this one.
    other = make_user("other")
    with django_capture_on_commit_callbacks(execute=True):
        job_create(owner=other, kind="glitch", video=video, params={})
    assert client.get(path)["X-Last-Event-ID"] == "2"
