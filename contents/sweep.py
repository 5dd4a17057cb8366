"""Contents whose worker died mid-stage: retried, or failed after CONTENT_MAX_ATTEMPTS.

RQ notices a SIGKILLed job only minutes later; this runs every CONTENT_SWEEP_INTERVAL
seconds (RQ's cron scheduler, `manage.py run_cron`), so a stalled content reaches a
retry or a final state within CONTENT_STALL_SECONDS + CONTENT_SWEEP_INTERVAL.
"""

import logging
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from contents.models import ACTIVE_STAGES, Content, ProcessingStatus
from contents.services import new_job_id, transition
from core.queue import job_is_waiting

logger = logging.getLogger(__name__)
BATCH = 200


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
            job_id = new_job_id(content.id)
            with transaction.atomic():
                claimed = Content.objects.filter(
                    id=content.id, version=content.version, job_id=content.job_id
                ).update(attempts=content.attempts + 1, heartbeat_at=now, job_id=job_id)
                if claimed:
                    from contents.tasks import enqueue_pipeline

                    transaction.on_commit(lambda cid=content.id, jid=job_id: enqueue_pipeline(cid, job_id=jid))
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
