"""The one lifecycle (core.lifecycle), edge by edge, for both of its kinds: contents and
AI jobs. Every allowed edge moves the row, raises its version and writes exactly one
event in the same transaction; every other edge raises; a stale read or a foreign run
moves nothing; the sweep follows each kind's policy."""

from datetime import timedelta
from typing import Any

import django_rq
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import transaction
from django.utils import timezone

from aijobs.lifecycle import AI_JOB
from aijobs.models import AIJob, JobStatus
from aijobs.services import job_create
from contents.lifecycle import CONTENT
from contents.models import STATUS_OF_STAGE, Content
from core import lifecycle
from core.lifecycle import TransitionNotAllowed
from realtime.models import Event
from tests.factories import make_content
from tests.helpers import make_user
from tests.media import make_video
from videos.services import video_upload

KINDS = {"content": CONTENT, "ai_job": AI_JOB}
STATUSES: dict[str, list[str]] = {"content": list(STATUS_OF_STAGE), "ai_job": list(JobStatus)}
EDGES = [
    (name, a, b) for name, kind in KINDS.items() for a in STATUSES[name] for b in STATUSES[name] if b in kind.edges.get(a, ())
]
NON_EDGES = [
    (name, a, b) for name, kind in KINDS.items() for a in STATUSES[name] for b in STATUSES[name] if b not in kind.edges.get(a, ())
]

pytestmark = pytest.mark.django_db


def reread(kind: lifecycle.Kind, row: Any) -> Any:
    """The row as the database has it now (a content or an AI job: the kind's model)."""
    return kind.model._default_manager.get(pk=row.pk)


def row_in(name: str, status: str, **fields):
    """A row of the kind in `status`, as a worker would read it (its enqueue never ran:
    the test's transaction does not commit)."""
    if name == "content":
        content = make_content()
        Content.objects.filter(id=content.id).update(status=STATUS_OF_STAGE[status], processing_status=status, **fields)
        return Content.objects.get(id=content.id)
    owner = make_user()
    video = video_upload(owner=owner, file=SimpleUploadedFile("src.mp4", make_video(seconds=0.2)), title="Source")
    job = job_create(owner=owner, kind="glitch", video=video, params={})
    AIJob.objects.filter(id=job.id).update(status=status, **fields)
    return AIJob.objects.select_related("owner").get(id=job.id)


def stream_of(name: str, row) -> str:
    return f"channel:{row.channel_id}" if name == "content" else f"user:{row.owner_id}"


def test_the_kinds_edges_are_exactly_their_pipelines():
    assert {(a, b) for name, a, b in EDGES if name == "content"} == {
        ("uploading", "summarizing"), ("uploading", "failed"), ("summarizing", "qa_generating"), ("summarizing", "failed"),
        ("qa_generating", "completed"), ("qa_generating", "failed"), ("failed", "uploading"), ("completed", "uploading"),
    }
    assert {(a, b) for name, a, b in EDGES if name == "ai_job"} == {
        ("queued", "processing"), ("queued", "failed"),
        ("processing", "processing"), ("processing", "completed"), ("processing", "failed"),
    }


@pytest.mark.parametrize(("name", "source", "target"), EDGES)
def test_an_allowed_edge_moves_raises_the_version_and_publishes_one_event(name, source, target):
    kind = KINDS[name]
    row = row_in(name, source)
    before, seq_before = row.version, Event.objects.filter(stream=stream_of(name, row)).count()

    moved = lifecycle.transition(kind, row, to=target, error="boom")

    assert moved is not None
    fresh = reread(kind, row)
    assert kind.status_of(fresh) == target
    assert fresh.version == before + 1 == moved.version
    events = list(Event.objects.filter(stream=stream_of(name, row)).order_by("seq"))
    assert len(events) == seq_before + 1, "exactly one event per move"
    assert events[-1].payload["version"] == fresh.version
    assert events[-1].payload[kind.status_field] == target
    if name == "content":
        expected = {"completed": "processing_complete", "failed": "processing_error"}.get(target, "content_status_update")
        assert events[-1].type == expected
    else:
        assert events[-1].type == "ai_job_update"
    if target == "failed":
        assert getattr(fresh, "error_message" if name == "content" else "error") == "boom"
    if target == "completed":
        assert fresh.progress == 100


@pytest.mark.parametrize(("name", "source", "target"), NON_EDGES)
def test_any_other_edge_raises_and_changes_nothing(name, source, target):
    kind = KINDS[name]
    row = row_in(name, source)
    events_before = Event.objects.count()

    with pytest.raises(TransitionNotAllowed):
        lifecycle.transition(kind, row, to=target)

    fresh = reread(kind, row)
    assert (kind.status_of(fresh), fresh.version) == (source, row.version)
    assert Event.objects.count() == events_before


@pytest.mark.parametrize("name", KINDS)
def test_a_stale_version_moves_nothing(name):
    kind = KINDS[name]
    first = next(s for s in STATUSES[name] if kind.edges.get(s))
    row = row_in(name, first)
    stale = reread(kind, row)
    kind.model._default_manager.filter(pk=row.pk).update(version=row.version + 1)  # someone else's move
    events_before = Event.objects.count()

    assert lifecycle.transition(kind, stale, to="failed", error="late worker") is None

    fresh = reread(kind, row)
    assert (kind.status_of(fresh), fresh.version) == (first, row.version + 1)
    assert Event.objects.count() == events_before


@pytest.mark.parametrize("name", KINDS)
def test_a_foreign_run_id_moves_nothing(name):
    kind = KINDS[name]
    first = next(s for s in STATUSES[name] if kind.edges.get(s))
    row = row_in(name, first)
    old_runner = reread(kind, row)
    kind.model._default_manager.filter(pk=row.pk).update(**{kind.fence_field: lifecycle.new_run_id(kind, row.pk)})

    assert lifecycle.transition(kind, old_runner, to="failed") is None
    assert kind.status_of(reread(kind, row)) == first


@pytest.mark.parametrize("name", KINDS)
def test_a_move_whose_transaction_rolls_back_leaves_no_event_and_no_change(name):
    kind = KINDS[name]
    first = next(s for s in STATUSES[name] if kind.edges.get(s))
    row = row_in(name, first)
    events_before = Event.objects.count()

    def move_then_fail() -> None:
        with transaction.atomic():
            lifecycle.transition(kind, row, to="failed")
            raise RuntimeError("the caller's transaction fails after the move")

    with pytest.raises(RuntimeError):
        move_then_fail()

    assert kind.status_of(reread(kind, row)) == first
    assert Event.objects.count() == events_before


def test_a_progress_step_never_overwrites_a_pending_cancel():
    job = row_in("ai_job", JobStatus.PROCESSING)
    AIJob.objects.filter(id=job.id).update(cancel_requested=True)

    assert lifecycle.transition(AI_JOB, job, to=JobStatus.PROCESSING, changes={"progress": 50}) is None
    assert AIJob.objects.get(id=job.id).progress == 0


# --- the sweep, per kind's policy -----------------------------------------------------------


def later(kind, seconds: float):
    return timezone.now() + timedelta(seconds=seconds + 1)


@pytest.fixture
def queue():
    queue = django_rq.get_queue("default")
    queue.empty()
    yield queue
    queue.empty()


@pytest.mark.parametrize("name", KINDS)
def test_a_lost_enqueue_is_enqueued_again_under_a_new_run_costing_no_attempt(name, queue, django_capture_on_commit_callbacks):
    kind = KINDS[name]
    row = row_in(name, next(iter(kind.stall.lost_in)))  # its enqueue never ran: the queue has no such job

    assert lifecycle.requeue_lost(kind, timezone.now()) == 0, "within the grace the enqueue may be on its way"
    with django_capture_on_commit_callbacks(execute=True):
        assert lifecycle.requeue_lost(kind, later(kind, kind.stall.lost_after())) == 1

    fresh = reread(kind, row)
    assert kind.run_of(fresh) != kind.run_of(row)
    assert queue.fetch_job(kind.run_of(fresh)) is not None
    assert getattr(fresh, "attempts", None) == getattr(row, "attempts", None)
    assert lifecycle.requeue_lost(kind, later(kind, kind.stall.lost_after())) == 0, "its new job is in the queue"


@pytest.mark.parametrize("name", KINDS)
def test_a_stalled_run_whose_job_waits_in_the_queue_is_left_alone(name, queue):
    kind = KINDS[name]
    row = row_in(name, next(iter(kind.stall.stalled_in)))
    lifecycle.enqueue(kind, row.pk, run_id=kind.run_of(row))

    assert lifecycle.sweep_stalled(kind, later(kind, kind.stall.stall_after())) == {"retried": 0, "failed": 0}
    assert reread(kind, row).version == row.version


def test_a_stalled_content_is_retried_until_its_attempts_run_out_then_fails(queue):
    stalled = row_in("content", "summarizing")
    when = later(CONTENT, CONTENT.stall.stall_after())

    assert lifecycle.sweep_stalled(CONTENT, when) == {"retried": 1, "failed": 0}
    retried = Content.objects.get(id=stalled.id)
    assert (retried.attempts, retried.processing_status) == (2, "summarizing")
    assert retried.job_id != stalled.job_id

    max_attempts = CONTENT.stall.max_attempts
    assert max_attempts is not None, "contents are retried: they have attempts"
    Content.objects.filter(id=stalled.id).update(attempts=max_attempts(), job_id="gone")
    # Its heartbeat was renewed at the retry: stalled again one stall later.
    again = when + timedelta(seconds=CONTENT.stall.stall_after() + 1)
    assert lifecycle.sweep_stalled(CONTENT, again) == {"retried": 0, "failed": 1}
    failed = Content.objects.get(id=stalled.id)
    assert failed.processing_status == "failed"
    assert "given up after" in failed.error_message


def test_a_stalled_ai_job_is_never_retried_it_fails(queue):
    stalled = row_in("ai_job", JobStatus.PROCESSING)

    assert lifecycle.sweep_stalled(AI_JOB, later(AI_JOB, AI_JOB.stall.stall_after())) == {"retried": 0, "failed": 1}
    failed = AIJob.objects.get(id=stalled.id)
    assert (failed.status, failed.error) == ("failed", "The worker processing this job stopped; credits refunded.")


@pytest.mark.parametrize("name", KINDS)
def test_a_running_row_with_a_fresh_heartbeat_is_not_stalled(name, queue):
    kind = KINDS[name]
    row = row_in(name, next(iter(kind.stall.stalled_in)), heartbeat_at=timezone.now())

    assert lifecycle.sweep(kind, timezone.now()) == {"requeued": 0, "retried": 0, "failed": 0}
    assert reread(kind, row).version == row.version


# --- the wire: each event's exact payload, from the serializers the REST answers use ---------


def test_each_content_event_carries_exactly_the_contracts_fields():
    content = row_in("content", "uploading")
    lifecycle.transition(CONTENT, content, to="summarizing")
    lifecycle.transition(CONTENT, content, to="qa_generating")
    lifecycle.transition(CONTENT, content, to="completed", changes={"ai_gen_metadata": {"summary": "S", "qa_list": []}})
    failed = row_in("content", "uploading")
    lifecycle.transition(CONTENT, failed, to="failed", error="It broke.")

    common = {"content_id", "status", "processing_status", "progress", "estimated_completion", "error_message", "version", "timestamp"}
    update = Event.objects.filter(stream=f"channel:{content.channel_id}", type="content_status_update").latest("seq")
    assert set(update.payload) == common
    assert update.payload["timestamp"].endswith("+00:00"), "events write the offset out, as they always have"
    complete = Event.objects.get(stream=f"channel:{content.channel_id}", type="processing_complete")
    assert complete.payload == {
        "content_id": str(content.id), "status": "complete", "processing_status": "completed", "progress": 100,
        "estimated_completion": None, "error_message": None, "version": content.version,
        "timestamp": content.updated_at.isoformat(), "ai_gen_metadata": {"summary": "S", "qa_list": []},
    }
    error = Event.objects.get(stream=f"channel:{failed.channel_id}", type="processing_error")
    assert set(error.payload) == common
    assert error.payload["error_message"] == "It broke."


def test_the_ai_job_event_is_the_rest_answers_fields():
    job = row_in("ai_job", JobStatus.QUEUED)
    lifecycle.transition(AI_JOB, job, to=JobStatus.FAILED, error="Cancelled")

    event = Event.objects.filter(stream=f"user:{job.owner_id}", type="ai_job_update").latest("seq")
    assert event.payload == {
        "id": str(job.id), "status": "failed", "progress": 0, "result_url": None, "error": "Cancelled", "version": job.version,
    }


def test_a_refused_edge_is_answered_409_as_a_problem():
    from drf_standardized_errors.handler import exception_handler
    from rest_framework.views import APIView

    response = exception_handler(TransitionNotAllowed("content", "summarizing", "uploading"), {"view": APIView(), "request": None, "args": (), "kwargs": {}})

    assert response is not None
    assert response.status_code == 409
    assert response.data["type"] == "client_error"
    assert response.data["errors"][0]["code"] == "conflict"
    assert response.data["detail"] == "A content cannot move from summarizing to uploading."


def test_a_stalled_run_whose_job_is_gone_costs_an_attempt_not_a_free_requeue(queue):
    # Its worker died and RQ forgot the job: the stall rule's (bounded by attempts), not
    # the lost-enqueue rule's, or a content that kills its worker would run forever.
    stalled = row_in("content", "summarizing", job_id="gone")

    assert lifecycle.sweep(CONTENT, later(CONTENT, CONTENT.stall.stall_after())) == {"requeued": 0, "retried": 1, "failed": 0}
    assert Content.objects.get(id=stalled.id).attempts == 2
