"""Contents whose worker died mid-stage: retried, or failed after CONTENT_MAX_ATTEMPTS;
and contents whose job the queue never got (or lost): enqueued again.

RQ notices a SIGKILLed job only minutes later; this runs every CONTENT_SWEEP_INTERVAL
seconds (RQ's cron scheduler, `manage.py run_cron`), so a stalled content reaches a
retry or a final state within CONTENT_STALL_SECONDS + CONTENT_SWEEP_INTERVAL, and a
lost enqueue is repaired within CONTENT_ENQUEUE_GRACE_SECONDS + CONTENT_SWEEP_INTERVAL.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from contents.models import ACTIVE_STAGES, Content, ProcessingStatus
from contents.services import new_job_id, transition
from core.queue import job_is_waiting, missing_jobs

logger = logging.getLogger(__name__)
BATCH = 200


def _enqueue_again(content: Content, *, now, count_attempt: bool) -> bool:  # type: ignore[no-untyped-def]
    """Hand the content to a new RQ job id, which fences out any runner of the old one."""
    from contents.tasks import enqueue_pipeline

    job_id = new_job_id(content.id)
    with transaction.atomic():
        claimed = Content.objects.filter(id=content.id, version=content.version, job_id=content.job_id).update(
            attempts=content.attempts + (1 if count_attempt else 0), heartbeat_at=now, job_id=job_id
        )
        if claimed:
            transaction.on_commit(lambda: enqueue_pipeline(content.id, job_id=job_id), robust=True)
    return bool(claimed)


def requeue_lost(now=None) -> int:  # type: ignore[no-untyped-def]
    """Active contents whose RQ job does not exist: the enqueue after commit failed
    (Redis was away) or a restarted Redis lost the queue. Not a failed attempt: the
    pipeline never ran, so it does not count against CONTENT_MAX_ATTEMPTS. Only
    contents not yet stalled: a stalled one is sweep_stalled()'s, whose attempts
    bound how often a content is tried."""
    now = now or timezone.now()
    # The grace covers the moment between the commit and its on_commit enqueue.
    grace_cutoff = now - timedelta(seconds=settings.CONTENT_ENQUEUE_GRACE_SECONDS)
    stall_cutoff = now - timedelta(seconds=settings.CONTENT_STALL_SECONDS)
    candidates = list(
        Content.objects.filter(
            processing_status__in=ACTIVE_STAGES, heartbeat_at__lt=grace_cutoff, heartbeat_at__gte=stall_cutoff
        ).order_by("heartbeat_at")[:BATCH]
    )
    missing = missing_jobs([content.job_id for content in candidates])
    requeued = sum(_enqueue_again(c, now=now, count_attempt=False) for c in candidates if c.job_id in missing)
    if requeued:
        logger.warning("Sweep: %d contents whose job the queue did not have were enqueued again", requeued)
    return requeued


def sweep_stalled(now=None) -> dict[str, int]:  # type: ignore[no-untyped-def]
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.CONTENT_STALL_SECONDS)
    # A row with no heartbeat at all predates the pipeline (backfilled idle rows): it has no job either.
    stalled = (
        Content.objects.filter(processing_status__in=ACTIVE_STAGES)
        .filter(Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True))
        .order_by(F("heartbeat_at").asc(nulls_first=True))[:BATCH]
    )
    retried = failed = 0
    for content in stalled:
        if job_is_waiting(content.job_id):
            continue
        if content.attempts < settings.CONTENT_MAX_ATTEMPTS:
            if _enqueue_again(content, now=now, count_attempt=True):
                retried += 1
        else:
            stage = content.get_processing_status_display().lower()
            if transition(
                content,
                to=ProcessingStatus.FAILED,
                error_message=f"Processing stopped responding ({stage}) and was given up after {content.attempts} attempts.",
            ):
                failed += 1
    if retried or failed:
        logger.info("Sweep: %d stalled contents retried, %d failed", retried, failed)
    return {"retried": retried, "failed": failed}
