"""Running one AI job on a worker. (Jobs whose worker died: the lifecycle's sweep,
aijobs.services.job_sweep.)"""

import logging
import os
import tempfile
import time
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.core.files import File
from django.db import close_old_connections

from aijobs.effects import RenderError, render
from aijobs.lifecycle import AI_JOB
from aijobs.models import CANCELLED, AIJob, JobStatus
from aijobs.services import job_move_again_if_lost as move
from aijobs.services import job_progress, job_start
from core import lifecycle, metrics
from core.db import move_again_if_lost, read_again_if_lost

logger = logging.getLogger(__name__)
PROGRESS_EVERY_SECONDS = 0.25


class Cancelled(Exception):
    pass


class Superseded(Exception):
    """Someone else moved the job (the sweep failed it, or another run owns it)."""


@dataclass
class _Run:
    """The job as the run's last move left it, and when its progress was last saved."""

    job: AIJob
    last_saved: float = 0.0


def run(job_id: uuid.UUID | str) -> str | None:
    close_old_connections()
    job = read_again_if_lost(
        lambda: AIJob.objects.select_related("owner", "video").filter(id=job_id).first(), doing=f"reading AI job {job_id}"
    )
    if job is None or job.status != JobStatus.QUEUED:
        return job.status if job else None
    job = move_again_if_lost(job_start, job, to=JobStatus.PROCESSING, status=AI_JOB.status_field, fence=AI_JOB.fence_field)
    if job is None or job.status != JobStatus.PROCESSING:
        return job.status if job else None

    state = _Run(job)

    def on_progress(fraction: float) -> None:
        now = time.monotonic()
        percent = min(99, int(fraction * 100))
        current = state.job
        # Saved and published a few times a second at most, never per frame.
        if now - state.last_saved < PROGRESS_EVERY_SECONDS or percent <= current.progress:
            return
        state.last_saved = now
        moved = job_progress(current, progress=percent)
        if moved is None:
            fresh = AIJob.objects.select_related("owner").get(id=current.id)
            if fresh.status == JobStatus.PROCESSING and fresh.cancel_requested and fresh.rq_job_id == current.rq_job_id:
                state.job = fresh
                raise Cancelled
            raise Superseded
        state.job = moved

    fd, output_path = tempfile.mkstemp(suffix=".mp4")
    os.close(fd)
    try:
        with (
            lifecycle.keep_alive(AI_JOB, job),
            metrics.stage_timer("ai_job", job.kind, stopped=(Cancelled, Superseded)),
            job.video.file.open("rb") as source,
        ):
            render(job.kind, job.params, source, output_path, on_progress, max_frames=settings.AI_JOB_MAX_FRAMES)
        current = state.job
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
        move(state.job, to=JobStatus.FAILED, error=CANCELLED)
        return JobStatus.FAILED
    except Superseded:
        return None
    except RenderError as exc:
        move(state.job, to=JobStatus.FAILED, error=str(exc))
        return JobStatus.FAILED
    except Exception:
        logger.exception("AI job %s crashed", job.id)
        move(state.job, to=JobStatus.FAILED, error="An unexpected error stopped the job; credits refunded.")
        return JobStatus.FAILED
    finally:
        os.unlink(output_path)
