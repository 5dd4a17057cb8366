"""Capacity a single user cannot take from everyone else: AI jobs in flight, open
streams (SSE + WebSocket) and WebSocket messages per second. Each limit answers a
clear refusal (a 429 problem, or a WebSocket error and close code) and costs nothing."""

import threading

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from rest_framework.test import APIClient

from aijobs.models import AIJob, CreditEntry
from aijobs.services import JobsInFlightLimitReached, job_create
from tests.conftest import api_client_for, make_user
from tests.media import make_video
from videos.services import video_upload

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def owner():
    return make_user()


@pytest.fixture
def video(owner):
    return video_upload(owner=owner, file=SimpleUploadedFile("v.mp4", make_video(seconds=1)), title="Clip")


def create_job(client, video):  # type: ignore[no-untyped-def]
    return client.post("/v1/ai/jobs", {"kind": "glitch", "video_id": str(video.id), "params": {}}, format="json")


def view_count(video) -> int:  # type: ignore[no-untyped-def]
    response = APIClient().post("/v1/videos/batch-metadata", {"video_ids": [str(video.id)]}, format="json")
    return response.json()["videos"][str(video.id)]["view_count"]


def test_a_loop_of_anonymous_views_from_one_address_counts_a_bounded_number_of_times(video, settings):
    """The same client 100 times counts once; a loop that varies its User-Agent (the
    client's to write) to look like new viewers counts at most ANONYMOUS_VIEWER_SLOTS
    times per address and window, not once a call; a second address is another viewer."""
    from videos.views import ANONYMOUS_VIEWER_SLOTS

    settings.VIEW_DEDUP_SECONDS = 1800
    for _ in range(100):
        assert APIClient(REMOTE_ADDR="198.51.100.7", HTTP_USER_AGENT="Firefox").post(f"/v1/videos/{video.id}/view").status_code == 204
    assert view_count(video) == 1
    for n in range(100):
        APIClient(REMOTE_ADDR="198.51.100.7", HTTP_USER_AGENT=f"Bot/{n}").post(f"/v1/videos/{video.id}/view")
    assert view_count(video) == ANONYMOUS_VIEWER_SLOTS  # before: 101
    APIClient(REMOTE_ADDR="198.51.100.8", HTTP_USER_AGENT="Firefox").post(f"/v1/videos/{video.id}/view")
    assert view_count(video) == ANONYMOUS_VIEWER_SLOTS + 1


def test_jobs_in_flight_per_user_are_bounded_and_a_refusal_costs_nothing(owner, video, settings):
    """Before: 30 accepted at once on 80 credits. The limit counts queued and processing jobs."""
    settings.AI_JOB_MAX_IN_FLIGHT_PER_USER = 5
    client = api_client_for(owner)
    answers = [create_job(client, video) for _ in range(30)]

    assert [a.status_code for a in answers] == [202] * 5 + [429] * 25
    refused = answers[-1]
    assert refused["Content-Type"] == "application/problem+json"
    assert int(refused["Retry-After"]) > 0
    problem = refused.json()
    assert problem["status"] == 429 and problem["errors"][0]["code"] == "too_many_jobs_in_flight"
    assert "5" in problem["detail"], problem["detail"]
    assert AIJob.objects.filter(owner=owner).count() == 5
    assert client.get("/v1/credits").json()["balance"] == 100
    assert not CreditEntry.objects.filter(user=owner, amount__lt=0).exists()

    # A finished job (here: cancelled) frees its place; another user has places of their own.
    client.post(f"/v1/ai/jobs/{answers[0].json()['id']}/cancel")
    assert create_job(client, video).status_code == 202
    assert create_job(client, video).status_code == 429
    assert create_job(api_client_for(make_user()), video).status_code == 202


def test_concurrent_creates_never_pass_the_jobs_in_flight_limit(owner, video, settings):
    settings.AI_JOB_MAX_IN_FLIGHT_PER_USER = 3
    # Eight: with the test's own connection, within the process's pool of ten.
    barrier = threading.Barrier(8)
    outcomes: list[str] = []

    def create() -> None:
        try:
            connection.ensure_connection()  # connected before the start, so that the creates overlap
            barrier.wait(timeout=30)
            job_create(owner=owner, kind="glitch", video=video, params={})
            outcomes.append("created")
        except JobsInFlightLimitReached:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["created"] * 3 + ["refused"] * 5
    assert AIJob.objects.filter(owner=owner).count() == 3
