from django.conf import settings
from django.core.management.base import BaseCommand
from rq.cron import CronScheduler

import django_rq
from aijobs.tasks import sweep_stalled_jobs
from contents.tasks import sweep_stalled_contents
from moderation.services import purge_deleted_video_files
from realtime.tasks import prune_old_rows
from videos.tasks import flush_view_counts


class Command(BaseCommand):
    help = "Run RQ's cron scheduler: the stalled-content sweep, the view-count flush and the hourly pruning of old events."

    def handle(self, *args, **options) -> None:
        scheduler = CronScheduler(connection=django_rq.get_connection("default"), name="aistatus-cron")
        scheduler.register(sweep_stalled_contents, "default", interval=settings.CONTENT_SWEEP_INTERVAL, job_timeout=60)
        scheduler.register(sweep_stalled_jobs, "default", interval=settings.CONTENT_SWEEP_INTERVAL, job_timeout=60)
        scheduler.register(flush_view_counts, "default", interval=settings.VIEW_FLUSH_SECONDS, job_timeout=60, result_ttl=60, ttl=60)
        scheduler.register(purge_deleted_video_files, "default", interval=600, job_timeout=600)
        scheduler.register(prune_old_rows, "default", interval=3600, job_timeout=600)
        self.stdout.write(f"Sweeping stalled contents every {settings.CONTENT_SWEEP_INTERVAL} s.")
        scheduler.start()
