"""A worker that dies mid-stage leaves nothing generating forever."""

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.utils import timezone

from contents.lifecycle import CONTENT
from contents.models import Content, ProcessingStatus
from contents.services import content_move
from core import lifecycle
from tests.factories import make_content
from tests.helpers import kill_tree, process_tree, run_burst_worker, wait_for
from tests.openai_stub import OpenAICompatibleServer

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parent.parent


def after_stall(extra: float = 1.0):
    return timezone.now() + timedelta(seconds=settings.CONTENT_STALL_SECONDS + extra)


def start_worker_process(ai_base_url: str) -> subprocess.Popen:
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "AI_PROVIDER": "openai",
        "AI_BASE_URL": ai_base_url,
    }
    return subprocess.Popen(
        [sys.executable, "manage.py", "rqworker", "default", "--worker-class", "core.worker.DjangoWorker"],
        cwd=ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def test_a_sigkilled_workers_content_is_retried_and_completes():
    hanging_ai = OpenAICompatibleServer(delay=120)
    content = make_content(title="Pools", description="Tide pools hold water. Starfish live there. Crabs hide under rocks.")
    worker = start_worker_process(hanging_ai.url("/v1"))
    try:
        wait_for(lambda: hanging_ai.bodies, what="the worker to reach the AI call")
        assert Content.objects.get(id=content.id).processing_status == ProcessingStatus.SUMMARIZING
        assert len(process_tree(worker.pid)) == 2, "the worker and its work horse"
        kill_tree(worker.pid)
        worker.wait(timeout=10)
    finally:
        kill_tree(worker.pid)
        hanging_ai.close()

    stalled = Content.objects.get(id=content.id)
    assert stalled.status == "generating"
    assert lifecycle.sweep_stalled(CONTENT, now=timezone.now()) == {"retried": 0, "failed": 0}, "not stalled yet: its heartbeat is fresh"

    assert lifecycle.sweep_stalled(CONTENT, now=after_stall()) == {"retried": 1, "failed": 0}
    retried = Content.objects.get(id=content.id)
    assert retried.attempts == 2
    assert retried.job_id != stalled.job_id

    run_burst_worker()

    done = Content.objects.get(id=content.id)
    assert (done.status, done.processing_status) == ("complete", "completed")
    assert done.ai_gen_metadata and done.ai_gen_metadata["summary"]


def test_a_run_handed_to_a_new_job_fences_out_the_old_one():
    content = make_content()
    Content.objects.filter(id=content.id).update(status="generating", processing_status="summarizing", job_id="lost-job")
    old_runner = Content.objects.get(id=content.id)

    assert lifecycle.sweep_stalled(CONTENT, now=after_stall()) == {"retried": 1, "failed": 0}

    assert content_move(old_runner, to=ProcessingStatus.QA_GENERATING, changes={"ai_gen_metadata": {"summary": "late"}}) is None
    row = Content.objects.get(id=content.id)
    assert (row.processing_status, row.ai_gen_metadata) == ("summarizing", None)


def test_a_content_stalled_past_its_attempts_ends_in_error():
    content = make_content()
    Content.objects.filter(id=content.id).update(
        status="generating", processing_status="qa_generating", attempts=settings.CONTENT_MAX_ATTEMPTS, job_id="gone"
    )

    assert lifecycle.sweep_stalled(CONTENT, now=after_stall()) == {"retried": 0, "failed": 1}

    row = Content.objects.get(id=content.id)
    assert (row.status, row.processing_status) == ("error", "failed")
    assert "stopped responding" in row.error_message
    assert f"after {settings.CONTENT_MAX_ATTEMPTS} attempts" in row.error_message


def test_a_content_whose_job_still_waits_in_the_queue_is_not_stalled():
    content = make_content()  # its pipeline job is queued; no worker has taken it

    assert lifecycle.sweep_stalled(CONTENT, now=after_stall(extra=600)) == {"retried": 0, "failed": 0}
    assert Content.objects.get(id=content.id).attempts == 1


def test_the_sweep_is_scheduled_well_within_two_minutes():
    assert settings.CONTENT_STALL_SECONDS + settings.CONTENT_SWEEP_INTERVAL < 120


def test_a_backfilled_idle_content_with_no_heartbeat_gets_its_pipeline():
    content = make_content()
    Content.objects.filter(id=content.id).update(heartbeat_at=None, job_id="")  # as the backfill leaves it

    assert lifecycle.sweep_stalled(CONTENT, now=timezone.now()) == {"retried": 1, "failed": 0}
    run_burst_worker()
    assert Content.objects.get(id=content.id).status == "complete"


def test_a_content_whose_enqueue_was_lost_is_enqueued_again_without_costing_an_attempt():
    import django_rq

    content = make_content()
    django_rq.get_queue("default").connection.flushdb()  # as a Redis restarted without its data
    soon = timezone.now() + timedelta(seconds=settings.CONTENT_ENQUEUE_GRACE_SECONDS + 1)

    assert lifecycle.requeue_lost(CONTENT, now=timezone.now()) == 0, "within the grace its enqueue may still be on its way"
    assert lifecycle.requeue_lost(CONTENT, now=soon) == 1
    assert lifecycle.requeue_lost(CONTENT, now=soon) == 0, "its new job is in the queue"
    row = Content.objects.get(id=content.id)
    assert row.attempts == 1 and row.job_id != content.job_id

    run_burst_worker()
    assert Content.objects.get(id=content.id).status == "complete"
