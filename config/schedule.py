"""The periodic jobs of every app, run by RQ's cron (manage.py run_cron, which finds
this list through settings.PERIODIC_JOBS). Assembled here, where every app may be
imported, so that core's command names none of them."""

from django.conf import settings

from aijobs.tasks import sweep_stalled_jobs
from contents.tasks import sweep_stalled_contents
from core.periodic import PeriodicJob
from core.tasks import prune_expired_idempotency_records
from moderation.services import purge_deleted_video_files
from realtime.tasks import prune_old_events
from videos.tasks import flush_view_counts


def periodic_jobs() -> list[PeriodicJob]:
    # Read when the cron starts, so that settings overridden by then (tests) count.
    return [
        PeriodicJob(sweep_stalled_contents, interval=settings.CONTENT_SWEEP_INTERVAL),
        PeriodicJob(sweep_stalled_jobs, interval=settings.CONTENT_SWEEP_INTERVAL),
        PeriodicJob(flush_view_counts, interval=settings.VIEW_FLUSH_SECONDS, options={"result_ttl": 60, "ttl": 60}),
        PeriodicJob(purge_deleted_video_files, interval=600, job_timeout=600),
        PeriodicJob(prune_old_events, interval=3600, job_timeout=600),
        PeriodicJob(prune_expired_idempotency_records, interval=3600, job_timeout=600),
    ]
