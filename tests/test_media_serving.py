"""Stored media: names and types decided by the server from what was decoded, served
only while a row names them (a moderated video's files stop at once), and never as
active content on the API's origin."""

import io
import uuid
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from aijobs.models import AIJob
from moderation.services import videos_delete
from tests.helpers import api_client_for, make_user
from tests.media import make_video
from videos.models import Video
from videos.services import video_upload

pytestmark = pytest.mark.django_db
VIDEO = make_video(seconds=1)
HTML = b"<html><body><script>document.title = 'pwned: ' + document.domain</script></body></html>"


def fetch(url: str):
    return APIClient().get(url)


def body_of(response) -> bytes:
    return b"".join(response.streaming_content)


def assert_served_passively(response, content_type: str) -> None:
    assert response.status_code == 200
    assert response["Content-Type"] == content_type
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response["Content-Security-Policy"]


def test_an_mp4_with_html_appended_named_x_html_is_stored_and_served_as_mp4():
    owner = make_user()
    polyglot = VIDEO + HTML
    upload = SimpleUploadedFile("x.html", polyglot, content_type="text/html")

    response = api_client_for(owner).post("/v1/videos", {"file": upload, "title": "x"}, format="multipart")

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["file_url"] == f"/media/{Video.objects.get(id=body['id']).file.name}"
    assert Path(body["file_url"]).name == f"{body['id']}.mp4"
    served = fetch(body["file_url"])
    assert_served_passively(served, "video/mp4")
    assert served["Content-Disposition"] == f'inline; filename="{body["id"]}.mp4"'
    assert body_of(served) == polyglot
    thumbnail = fetch(body["thumbnail_url"])
    assert_served_passively(thumbnail, "image/jpeg")


def webm_bytes() -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="webm") as container:
        stream = container.add_stream("libvpx-vp9", rate=Fraction(10, 1))
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(5):
            frame = np.full((48, 64, 3), index * 40, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


def test_the_stored_type_follows_the_container_not_the_clients_name():
    video = video_upload(owner=make_user(), file=SimpleUploadedFile("clip.mp4", webm_bytes(), content_type="video/mp4"), title="w")
    assert video.file.name is not None and video.file.name.endswith(f"/{video.id}.webm")
    assert_served_passively(fetch(video.file.url), "video/webm")


def test_a_container_outside_the_accepted_ones_is_refused_and_stores_nothing():
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mpegts") as container:
        stream = container.add_stream("libx264", rate=Fraction(10, 1))
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for _ in range(5):
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    response = api_client_for(make_user()).post(
        "/v1/videos", {"file": SimpleUploadedFile("clip.ts", buffer.getvalue()), "title": "ts"}, format="multipart"
    )
    assert response.status_code == 400
    assert "MP4" in response.json()["errors"][0]["detail"]
    assert not Video.objects.exists()


def test_a_file_in_media_that_no_row_names_is_not_served():
    name = default_storage.save("videos/2020/01/evil.html", ContentFile(HTML))
    assert Path(settings.MEDIA_ROOT, name).exists()
    assert fetch(f"/media/{name}").status_code == 404
    assert fetch("/media/../../etc/passwd").status_code == 404


def test_a_file_stored_before_these_rules_under_an_active_extension_is_only_a_download():
    owner = make_user()
    video = video_upload(owner=owner, file=SimpleUploadedFile("v.mp4", VIDEO), title="old")
    legacy = default_storage.save(f"videos/2020/01/{video.id}.html", ContentFile(VIDEO + HTML))
    Video.objects.filter(id=video.id).update(file=legacy)

    served = fetch(f"/media/{legacy}")

    assert served.status_code == 200
    assert served["Content-Type"] == "application/octet-stream"
    assert served["Content-Disposition"].startswith("attachment;")
    assert served["X-Content-Type-Options"] == "nosniff"


def result_of(job_owner, video) -> str:
    job_id = uuid.uuid4()
    name = default_storage.save(f"ai-results/2026/01/{job_id}.mp4", ContentFile(VIDEO))
    AIJob.objects.create(id=job_id, owner=job_owner, kind="glitch", video=video, cost=10, status="completed", result_file=name)
    return f"/media/{name}"


def test_a_moderated_videos_files_and_ai_results_stop_being_served_at_once():
    owner, staff = make_user(), make_user(is_staff=True)
    video = video_upload(owner=owner, file=SimpleUploadedFile("v.mp4", VIDEO), title="bad")
    other = video_upload(owner=owner, file=SimpleUploadedFile("v.mp4", VIDEO), title="fine")
    urls = [video.file.url, video.thumbnail.url, result_of(owner, video)]
    assert [fetch(url).status_code for url in urls] == [200, 200, 200]

    videos_delete(video_ids=[video.id], reason="abuse", by=staff)

    # For everyone, the owner included: the contract says the video disappears.
    owners_client = api_client_for(owner)
    assert [fetch(url).status_code for url in urls] == [404, 404, 404]
    assert [owners_client.get(url).status_code for url in urls] == [404, 404, 404]
    # The files themselves wait for the grace period (purge_deleted_video_files).
    assert video.file.name and Path(settings.MEDIA_ROOT, video.file.name).exists()
    assert fetch(other.file.url).status_code == 200


def test_media_is_not_served_at_all_when_serve_media_is_off(settings):
    video = video_upload(owner=make_user(), file=SimpleUploadedFile("v.mp4", VIDEO), title="v")
    settings.SERVE_MEDIA = False
    assert fetch(video.file.url).status_code == 404
