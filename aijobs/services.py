"""AI jobs: create, start (charging credits), progress, finish, cancel. A job's status
and progress change only in `job_move()`: the lifecycle's compare-and-set transition
(aijobs.lifecycle) and the steps below (refund, counter, notification), in one
transaction with the `ai_job_update` event."""

import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from aijobs import credits
from aijobs.lifecycle import AI_JOB, AI_JOB_UPDATE, ALLOWED_TRANSITIONS
from aijobs.models import CANCELLED, FINISHED, INSUFFICIENT_CREDITS, AIJob, JobStatus
from core import lifecycle
from core.errors import LimitReached
from core.lifecycle import Move
from notifications.models import NotificationType
from notifications.services import notify
from videos.models import Video
from videos.services import video_count_ai_result

__all__ = ["AI_JOB_UPDATE", "ALLOWED_TRANSITIONS", "job_cancel", "job_create", "job_move", "job_progress", "job_start"]


class JobsInFlightLimitReached(LimitReached):
    """The owner already has AI_JOB_MAX_IN_FLIGHT_PER_USER jobs queued or processing."""

    # A job takes seconds to minutes; a client told to wait this long polls a few times.
    RETRY_AFTER = 10

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"You have {limit} AI jobs queued or processing, the most one user may have at once; "
            "wait for one to finish (or cancel one) and try again.",
            code="too_many_jobs_in_flight",
            wait=self.RETRY_AFTER,
        )
        self.limit = limit


# The side effects of a job's move, each a step run in the move's transaction.


def refund_if_failed(job: AIJob, move: Move) -> None:
    """A charged job that fails is paid back, once (the move set `refunded`)."""
    if move.values.get("refunded"):
        credits.add(user=job.owner, amount=job.cost, reason=f"Refund: {job.kind} job failed ({job.error})", job=job)


def count_result(job: AIJob, move: Move) -> None:
    """A completed job counts on its source video."""
    if move.to == JobStatus.COMPLETED:
        video_count_ai_result(video_id=job.video_id, kind=job.kind)


def notify_finished(job: AIJob, move: Move) -> None:
    """The owner hears when their job is completed or failed."""
    if move.to not in FINISHED:
        return
    notify(
        recipient_id=job.owner_id, actor_id=None,
        type=NotificationType.AI_JOB_COMPLETED if move.to == JobStatus.COMPLETED else NotificationType.AI_JOB_FAILED,
        data={"job_id": str(job.id), "kind": job.kind, "video_id": str(job.video_id),
              "result_url": job.result_url, "error": job.error or None},
    )


MOVE_STEPS = (refund_if_failed, count_result, notify_finished)


def job_move(job: AIJob, *, to: str, changes: dict[str, Any] | None = None, error: str = "") -> AIJob | None:
    """Move the job as it was read (status, version, run, no cancel pending for a progress
    step) with MOVE_STEPS; None if it moved meanwhile."""
    return lifecycle.transition(AI_JOB, job, to=to, changes=changes, error=error, steps=MOVE_STEPS)


def job_move_again_if_lost(job: AIJob, *, to: str, **kwargs: Any) -> AIJob | None:
    """job_move(), once more if the database connection dies under it (a worker's)."""
    return lifecycle.move(AI_JOB, job, to=to, steps=MOVE_STEPS, **kwargs)


def _estimate(job: AIJob, progress: int, now: datetime) -> datetime | None:
    if not job.started_at or progress <= 0:
        return None
    elapsed = (now - job.started_at).total_seconds()
    return now + timedelta(seconds=elapsed * (100 - progress) / progress)


def job_progress(job: AIJob, *, progress: int) -> AIJob | None:
    """A progress step (processing -> processing) with its estimate; None if the job was
    moved or a cancel is pending."""
    estimate = _estimate(job, progress, timezone.now())
    return job_move_again_if_lost(
        job, to=JobStatus.PROCESSING, changes={"progress": progress, "estimated_completion": estimate}
    )


def job_sweep(now: datetime | None = None) -> dict[str, int]:
    """Lost enqueues enqueued again, jobs of dead workers failed and refunded (AI_JOB's policy)."""
    return lifecycle.sweep(AI_JOB, now, steps=MOVE_STEPS)


def job_create(*, owner: Any, kind: str, video: Video, params: dict[str, Any]) -> AIJob:
    """Queue a job; credits are taken when a worker starts it. Raises
    JobsInFlightLimitReached, creating nothing, when the owner already has
    AI_JOB_MAX_IN_FLIGHT_PER_USER jobs queued or processing: credits are only checked
    at start, so without it one user could fill the queue (and the workers) at will."""
    job_id = uuid.uuid4()
    limit = settings.AI_JOB_MAX_IN_FLIGHT_PER_USER
    with transaction.atomic():
        # The owner's row is locked so that one create at a time counts that user's jobs:
        # two concurrent creates must not both see the last free place.
        get_user_model().objects.select_for_update().filter(pk=owner.pk).values_list("pk").get()
        if AIJob.objects.filter(owner=owner).exclude(status__in=FINISHED).count() >= limit:
            raise JobsInFlightLimitReached(limit)
        job = AIJob.objects.create(
            id=job_id, owner=owner, kind=kind, video=video, params=params,
            cost=settings.AI_JOB_COSTS[kind], rq_job_id=lifecycle.new_run_id(AI_JOB, job_id),
            # The lost-enqueue rule of the sweep counts from here.
            heartbeat_at=timezone.now(),
        )
        AI_JOB.publish(*AI_JOB.event(job))
        lifecycle.enqueue_on_commit(AI_JOB, job)
    return job


def job_start(job: AIJob) -> AIJob | None:
    """queued -> processing, paid for; or failed with "Insufficient credits", costing
    nothing. Both in one transaction, so a lost race takes no credits."""
    with transaction.atomic():
        if not credits.spend(user=job.owner, amount=job.cost, reason=f"{job.kind} job", job=job):
            return job_move(job, to=JobStatus.FAILED, error=INSUFFICIENT_CREDITS)
        started = job_move(job, to=JobStatus.PROCESSING, changes={"charged": True})
        if started is None:
            transaction.set_rollback(True)
        return started


def job_cancel(job: AIJob) -> AIJob:
    """Cancel (idempotent). A queued job fails at once; a processing one is marked and
    its worker stops at the next progress check. Either way it ends `failed` with
    error "Cancelled", refunded if it was charged."""
    for _ in range(3):
        if job.status in FINISHED or job.cancel_requested:
            return job
        if job.status == JobStatus.QUEUED:
            cancelled = job_move(job, to=JobStatus.FAILED, error=CANCELLED)
            if cancelled:
                return cancelled
        else:
            AIJob.objects.filter(id=job.id, status=JobStatus.PROCESSING).update(cancel_requested=True)
        job = AIJob.objects.select_related("owner").get(id=job.id)
    return job
