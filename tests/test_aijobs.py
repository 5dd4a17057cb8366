"""AI jobs on real burst RQ workers: real frames, real progress, credits that never overdraw.

The workers here run as their own processes: this test process has used FFmpeg
(making and probing videos), and a work horse forked from it can inherit FFmpeg's
internal locks mid-use."""

import threading
import uuid
from datetime import timedelta

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.utils import timezone

from aijobs import credits
from aijobs.models import AIJob, CreditAccount
from aijobs.services import job_create, job_start, job_sweep
from realtime.models import Event
from tests.helpers import api_client_for, kill_tree, make_user, process_tree, wait_for
from tests.live import run_burst_worker_process as run_burst_worker
from tests.live import subprocess_env
from tests.media import decode_frames, make_video
from videos.services import video_upload

pytestmark = pytest.mark.django_db(transaction=True)
SOURCE = make_video(seconds=2, width=160, height=120, fps=15)


@pytest.fixture
def owner():
    return make_user("owner")


@pytest.fixture
def video(owner):
    return video_upload(owner=owner, file=SimpleUploadedFile("src.mp4", SOURCE), title="Source")


def create(client, video, kind="glitch", **params):
    response = client.post("/v1/ai/jobs", {"kind": kind, "video_id": str(video.id), "params": params}, format="json")
    assert response.status_code == 202, response.content
    return response.json()


def media_bytes(url: str) -> bytes:
    from django.http import StreamingHttpResponse
    from rest_framework.test import APIClient

    response = APIClient().get(url)
    assert isinstance(response, StreamingHttpResponse), response
    return b"".join(response.streaming_content)


def test_a_glitch_job_completes_with_rising_progress_and_a_glitched_video(owner, video):
    client = api_client_for(owner)
    job = create(client, video, intensity=0.8)
    assert (job["status"], job["job_id"], job["id"], job["queue_position"], job["cost"]) == ("queued", job["id"], job["id"], 1, 10)

    run_burst_worker()

    done = client.get(f"/v1/ai/jobs/{job['id']}").json()
    assert (done["status"], done["progress"], done["error"], done["refunded"]) == ("completed", 100, None, False)
    assert done["started_at"] and done["finished_at"] and done["queue_position"] is None
    progress = [e.payload["progress"] for e in Event.objects.filter(stream=f"user:{owner.id}", type="ai_job_update").order_by("seq")]
    assert progress == sorted(progress) and progress[-1] == 100
    assert len(set(progress)) >= 3, f"progress should move in steps, saw {progress}"
    result = decode_frames(media_bytes(done["result_url"]))
    source = decode_frames(SOURCE)
    assert len(result) == len(source)
    assert np.mean(np.abs(result[5].astype(int) - source[5].astype(int))) > 10
    assert client.get("/v1/credits").json()["balance"] == 90
    video.refresh_from_db()
    assert video.glitch_count == 1


def test_a_reverse_remix_plays_the_source_backwards(owner, video):
    client = api_client_for(owner)
    job = create(client, video, kind="remix", mode="reverse")
    run_burst_worker()
    done = client.get(f"/v1/ai/jobs/{job['id']}").json()
    assert done["status"] == "completed"
    result, source = decode_frames(media_bytes(done["result_url"])), decode_frames(SOURCE)
    assert len(result) == len(source)
    # lossy codecs: compare each result frame with the source frames, nearest must be the mirrored index
    nearest = [int(np.argmin([np.mean(np.abs(r.astype(int) - s.astype(int))) for s in source])) for r in result[:5]]
    assert nearest == [len(source) - 1 - i for i in range(5)]
    video.refresh_from_db()
    assert video.remix_count == 1


def test_a_job_the_balance_cannot_cover_fails_and_costs_nothing(owner, video):
    client = api_client_for(owner)
    credits.spend(user=owner, amount=95, reason="test")
    job = create(client, video)
    run_burst_worker()
    done = client.get(f"/v1/ai/jobs/{job['id']}").json()
    assert (done["status"], done["error"], done["refunded"]) == ("failed", "Insufficient credits", False)
    assert client.get("/v1/credits").json()["balance"] == 5


def test_two_concurrent_jobs_that_exceed_the_balance_never_overdraw(owner, video):
    credits.spend(user=owner, amount=85, reason="leave 15")
    jobs = [job_create(owner=owner, kind="glitch", video=video, params={}) for _ in range(2)]
    barrier = threading.Barrier(2)
    results = {}

    def start(job):
        try:
            barrier.wait()
            started = job_start(AIJob.objects.select_related("owner").get(id=job.id))
            results[job.id] = started.status if started else "moved by someone else"
        finally:
            connection.close()

    threads = [threading.Thread(target=start, args=(job,)) for job in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert sorted(results.values()) == ["failed", "processing"]
    assert CreditAccount.objects.get(user=owner).balance == 5
    failed = AIJob.objects.get(status="failed")
    assert failed.error == "Insufficient credits" and not failed.charged


def test_cancelling_a_queued_job_fails_it_without_charge_and_repeats_harmlessly(owner, video):
    client = api_client_for(owner)
    job = create(client, video)
    first = client.post(f"/v1/ai/jobs/{job['id']}/cancel").json()
    again = client.post(f"/v1/ai/jobs/{job['id']}/cancel").json()
    assert (first["status"], first["error"]) == ("failed", "Cancelled")
    assert again == first
    run_burst_worker()
    assert client.get(f"/v1/ai/jobs/{job['id']}").json()["status"] == "failed"
    assert client.get("/v1/credits").json()["balance"] == 100


def start_worker_process():
    import subprocess
    import sys

    from tests.live import ROOT

    return subprocess.Popen(
        [sys.executable, "manage.py", "rqworker", "default", "--worker-class", "core.worker.DjangoWorker"],
        cwd=ROOT, env=subprocess_env(), start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


@pytest.fixture
def long_video(owner):
    return video_upload(owner=owner, file=SimpleUploadedFile("long.mp4", make_video(seconds=40, width=320, height=240, fps=30)), title="Long")


def test_cancelling_a_running_job_stops_it_at_the_next_progress_check_and_refunds(owner, long_video):
    client = api_client_for(owner)
    job = create(client, long_video, kind="remix", mode="speed", factor=0.5)
    worker = start_worker_process()
    try:
        wait_for(lambda: AIJob.objects.get(id=job["id"]).progress > 0, timeout=60, what="the job to make progress")
        cancelled = client.post(f"/v1/ai/jobs/{job['id']}/cancel").json()
        assert cancelled["status"] == "processing"
        wait_for(lambda: AIJob.objects.get(id=job["id"]).status == "failed", what="the worker to stop")
    finally:
        kill_tree(worker.pid)
    done = client.get(f"/v1/ai/jobs/{job['id']}").json()
    assert (done["error"], done["refunded"]) == ("Cancelled", True)
    assert done["progress"] < 100
    assert client.get("/v1/credits").json()["balance"] == 100


def test_a_sigkilled_workers_job_ends_failed_and_refunded(owner, long_video):
    client = api_client_for(owner)
    job = create(client, long_video, kind="remix", mode="speed", factor=0.5)
    worker = start_worker_process()
    try:
        wait_for(lambda: AIJob.objects.get(id=job["id"]).progress > 0, timeout=60, what="the job to make progress")
        assert len(process_tree(worker.pid)) == 2
    finally:
        kill_tree(worker.pid)
        worker.wait(10)
    assert AIJob.objects.get(id=job["id"]).status == "processing"
    from django.conf import settings

    assert job_sweep(now=timezone.now() + timedelta(seconds=settings.AI_JOB_STALL_SECONDS + 1)) == {"requeued": 0, "retried": 0, "failed": 1}
    done = client.get(f"/v1/ai/jobs/{job['id']}").json()
    assert done["status"] == "failed" and done["refunded"] is True
    assert "stopped" in done["error"]
    assert client.get("/v1/credits").json()["balance"] == 100


# --- reads ---------------------------------------------------------------------------------


def test_batch_status_has_the_seeds_shape_and_hides_other_users_jobs(owner, video):
    client = api_client_for(owner)
    mine = create(client, video)
    other = make_user("other")
    theirs = job_create(owner=other, kind="glitch", video=video, params={})
    unknown = str(uuid.uuid4())
    response = client.post("/v1/ai/jobs/batch-status", {"job_ids": [mine["id"], str(theirs.id), unknown, mine["id"]]}, format="json")
    assert response.json() == {
        "jobs": {mine["id"]: {"status": "queued", "progress": 0, "result_url": None, "error": None}},
        "not_found": [str(theirs.id), unknown],
    }
    assert response["X-Poll-Interval"] == "2"
    assert client.get(f"/v1/ai/jobs/{theirs.id}").status_code == 404


@pytest.mark.parametrize("count", [1, 100])
def test_batch_status_costs_a_fixed_number_of_queries(owner, video, count, django_assert_num_queries):
    AIJob.objects.bulk_create([AIJob(owner=owner, kind="glitch", video=video, cost=10) for _ in range(count)])
    ids = [str(i) for i in AIJob.objects.values_list("id", flat=True)]
    client = api_client_for(owner)
    with django_assert_num_queries(2):  # knox token, one select
        response = client.post("/v1/ai/jobs/batch-status", {"job_ids": ids}, format="json")
    assert len(response.json()["jobs"]) == count


def test_the_job_list_filters_by_status_and_rejects_unknown_ones(owner, video):
    client = api_client_for(owner)
    queued = create(client, video)
    cancelled = create(client, video)
    client.post(f"/v1/ai/jobs/{cancelled['id']}/cancel")
    assert [j["id"] for j in client.get("/v1/ai/jobs?status=queued").json()["results"]] == [queued["id"]]
    assert [j["id"] for j in client.get("/v1/ai/jobs?status=failed").json()["results"]] == [cancelled["id"]]
    bad = client.get("/v1/ai/jobs?status=done-ish")
    assert bad.status_code == 400 and bad.json()["errors"][0]["attr"] == "status"


def test_bad_job_requests_are_400s_naming_the_field(owner, video):
    client = api_client_for(owner)
    for body, attr in [
        ({"kind": "sharpen", "video_id": str(video.id)}, "kind"),
        ({"kind": "glitch", "video_id": str(uuid.uuid4())}, "video_id"),
        ({"kind": "remix", "video_id": str(video.id), "params": {"mode": "sideways"}}, "params.mode"),
    ]:
        response = client.post("/v1/ai/jobs", body, format="json")
        assert response.status_code == 400
        assert response.json()["errors"][0]["attr"] == attr
    assert AIJob.objects.count() == 0


def test_a_retried_create_with_the_same_key_queues_one_job(owner, video):
    client = api_client_for(owner)
    body = {"kind": "glitch", "video_id": str(video.id), "params": {}}
    first = client.post("/v1/ai/jobs", body, format="json", HTTP_IDEMPOTENCY_KEY="job-1")
    again = client.post("/v1/ai/jobs", body, format="json", HTTP_IDEMPOTENCY_KEY="job-1")
    assert first.json()["id"] == again.json()["id"]
    assert AIJob.objects.count() == 1
    run_burst_worker()
    assert client.get("/v1/credits").json()["balance"] == 90


def test_new_accounts_start_with_the_grant(owner):
    assert api_client_for(owner).get("/v1/credits").json() == {"balance": 100, "costs": {"glitch": 10, "remix": 20}}


def test_staff_add_credits_in_the_admin(owner):
    from django.test import Client

    staff = make_user("staff", is_staff=True, is_superuser=True)
    admin = Client()
    admin.force_login(staff)
    assert credits.balance(owner) == 100
    response = admin.post("/admin/aijobs/creditentry/add/", {"user": str(owner.id), "amount": "50", "reason": "Support gesture"})
    assert response.status_code == 302
    assert credits.balance(owner) == 150
    entry = owner.credit_entries.get(reason="Support gesture")
    assert (entry.amount, entry.created_by) == (50, staff)


def test_a_queued_job_whose_enqueue_was_lost_is_enqueued_again(owner, video):
    import django_rq

    job = job_create(owner=owner, kind="glitch", video=video, params={})
    django_rq.get_queue("default").empty()  # the enqueue never reached Redis
    from django.conf import settings

    assert job_sweep(now=timezone.now() + timedelta(seconds=settings.AI_JOB_STALL_SECONDS + 1)) == {"requeued": 1, "retried": 0, "failed": 0}
    assert AIJob.objects.get(id=job.id).rq_job_id != job.rq_job_id
    run_burst_worker()
    assert AIJob.objects.get(id=job.id).status == "completed"
