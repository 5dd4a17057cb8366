"""Running one AI job on a worker, and failing jobs whose worker died."""

import logging
import os
import tempfile
import time
import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.files import File
from django.db import close_old_connections
from django.utils import timezone

from aijobs.effects import RenderError, render
from aijobs.models import CANCELLED, AIJob, JobStatus
from aijobs.services import job_start, new_rq_job_id, transition
from aijobs.tasks import enqueue_job
from core import metrics
from core.db import move_again_if_lost, read_again_if_lost
from core.heartbeat import keep_alive
from core.queue import job_is_running, job_is_waiting

logger = logging.getLogger(__name__)
PROGRESS_EVERY_SECONDS = 0.25


class Cancelled(Exception):
    pass


class Superseded(Exception):
    """Someone else moved the job (the sweep failed it, or another run owns it)."""


def move(job: AIJob, *, to: str, **kwargs: Any) -> AIJob | None:
    """transition(), once more if the database connection dies under it (core.db): a
    render that lost its connection carries on rather than failing or being left to the sweep."""
    return move_again_if_lost(lambda row: transition(row, to=to, **kwargs), job, to=to, status="status", fence="rq_job_id")


def run(job_id: uuid.UUID | str) -> str | None:
    close_old_connections()
    job = read_again_if_lost(
        lambda: AIJob.objects.select_related("owner", "video").filter(id=job_id).first(), doing=f"reading AI job {job_id}"
    )
    if job is None or job.status != JobStatus.QUEUED:
        return job.status if job else None
    job = move_again_if_lost(job_start, job, to=JobStatus.PROCESSING, status="status", fence="rq_job_id")
    if job is None or job.status != JobStatus.PROCESSING:
        return job.status if job else None

    state = {"job": job, "last": 0.0}

    def on_progress(fraction: float) -> None:
        now = time.monotonic()
        percent = min(99, int(fraction * 100))
        current = state["job"]
        # Saved and published a few times a second at most, never per frame.
        if now - state["last"] < PROGRESS_EVERY_SECONDS or percent <= current.progress:
            return
        state["last"] = now
        moved = move(current, to=JobStatus.PROCESSING, progress=percent)
        if moved is None:
            fresh = AIJob.objects.select_related("owner").get(id=current.id)
            if fresh.status == JobStatus.PROCESSING and fresh.cancel_requested and fresh.rq_job_id == current.rq_job_id:
                state["job"] = fresh
                raise Cancelled
            raise Superseded
        state["job"] = moved

    fd, output_path = tempfile.mkstemp(suffix=".mp4")
    os.close(fd)
    try:
        with keep_alive(AIJob, id=job.id, rq_job_id=job.rq_job_id, status=JobStatus.PROCESSING):
            with metrics.stage_timer("ai_job", job.kind, stopped=(Cancelled, Superseded)), job.video.file.open("rb") as source:
                render(job.kind, job.params, source, output_path, on_progress, max_frames=settings.AI_JOB_MAX_FRAMES)
        current = state["job"]
        with open(output_path, "rb") as result:
            current.result_file.save(f"{current.id}.mp4", File(result), save=False)
        finished = move(current, to=JobStatus.COMPLETED, changes={"result_file": current.result_file.name})
        if finished is None:
            current.result_file.delete(save=False)
            fresh = AIJob.objects.select_related("owner").get(id=current.id)
            if fresh.status == JobStatus.PROCESSING and fresh.cancel_requested:
                move(fresh, to=JobStatus.FAILED, error=CANCELLED)
            return fresh.status
        return finished.status
    except Cancelled:
        move(state["job"], to=JobStatus.FAILED, error=CANCELLED)
        return JobStatus.FAILED
    except Superseded:
        return None
    except RenderError as exc:
        move(state["job"], to=JobStatus.FAILED, error=str(exc))
        return JobStatus.FAILED
    except Exception:
        logger.exception("AI job %s crashed", job.id)
        move(state["job"], to=JobStatus.FAILED, error="An unexpected error stopped the job; credits refunded.")
        return JobStatus.FAILED
    finally:
        os.unlink(output_path)


def sweep_stalled(now=None) -> int:  # type: ignore[no-untyped-def]
    """Jobs processing with a stale heartbeat whose worker is gone end failed (refunded);
    queued jobs whose RQ job was lost (an enqueue that failed after commit) are
    enqueued again under a new RQ job id."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.AI_JOB_STALL_SECONDS)
    for job in AIJob.objects.filter(status=JobStatus.QUEUED, created_at__lt=cutoff)[:200]:
        if job_is_waiting(job.rq_job_id) or job_is_running(job.rq_job_id):
            continue
        rq_job_id = new_rq_job_id(job.id)
        if AIJob.objects.filter(id=job.id, status=JobStatus.QUEUED, rq_job_id=job.rq_job_id).update(rq_job_id=rq_job_id):
            enqueue_job(job.id, rq_job_id=rq_job_id)
    failed = 0
    for job in AIJob.objects.select_related("owner").filter(status=JobStatus.PROCESSING, heartbeat_at__lt=cutoff)[:200]:
        if job_is_waiting(job.rq_job_id):
            continue
        if transition(job, to=JobStatus.FAILED, error="The worker processing this job stopped; credits refunded."):
            failed += 1
    return failed
