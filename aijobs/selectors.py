import uuid
from typing import Any

from django.db.models import Count, IntegerField, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce

from aijobs.models import AIJob, JobStatus, result_url_of
from core.errors import NotFound
from videos.media import content_type_of
from videos.selectors import stored_id


def with_queue_position(jobs: Any) -> Any:
    """Annotate each job with 1 + the number of queued jobs created before it."""
    earlier = (
        AIJob.objects.filter(status=JobStatus.QUEUED, created_at__lt=OuterRef("created_at"))
        .order_by()
        .values("status")
        .annotate(n=Count("id"))
        .values("n")
    )
    return jobs.annotate(queue_position=Coalesce(Subquery(earlier, output_field=IntegerField()), Value(0)) + 1)


def job_list(*, user: Any, status: str | None = None) -> Any:
    jobs = AIJob.objects.filter(owner=user)
    if status:
        jobs = jobs.filter(status=status)
    return with_queue_position(jobs).order_by("-created_at", "-id")


def job_get(*, user: Any, job_id: uuid.UUID) -> AIJob:
    job = with_queue_position(AIJob.objects.filter(owner=user, id=job_id).select_related("owner")).first()
    if job is None:
        raise NotFound("No such job.")
    return job


def job_statuses(*, user: Any, job_ids: list[uuid.UUID]) -> dict[str, dict[str, Any]]:
    """The seed's shape, for the caller's own jobs only, in one query."""
    rows = AIJob.objects.filter(owner=user, id__in=job_ids).values("id", "status", "progress", "result_file", "error")
    return {
        str(row["id"]): {
            "status": row["status"],
            "progress": row["progress"],
            "result_url": result_url_of(row["result_file"]),
            "error": row["error"] or None,
        }
        for row in rows
    }


def job_result_media_type(name: str) -> str | None:
    """The Content-Type to serve a job's result file as (the runner writes MP4 under the
    job's id), or None if no job has it or its source video was removed by moderation."""
    job_id = stored_id(name)
    if job_id is None:
        return None
    found = AIJob.objects.filter(id=job_id, result_file=name, video__deleted_at__isnull=True).exists()
    return content_type_of(name) if found else None
