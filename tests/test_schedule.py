"""The RQ cron runs every app's periodic jobs, from the schedule config/ assembles
(core's run_cron names no app)."""

from core.periodic import build_cron


def test_the_cron_runs_each_apps_periodic_jobs_from_the_schedule(settings):
    settings.CONTENT_SWEEP_INTERVAL = 7
    jobs = {job.func_name: job for job in build_cron().get_jobs()}
    assert set(jobs) == {
        "contents.tasks.sweep_stalled_contents",
        "aijobs.tasks.sweep_stalled_jobs",
        "videos.tasks.flush_view_counts",
        "moderation.services.purge_deleted_video_files",
        "realtime.tasks.prune_old_events",
        "core.tasks.prune_expired_idempotency_records",
    }
    assert jobs["contents.tasks.sweep_stalled_contents"].interval == 7
    assert jobs["realtime.tasks.prune_old_events"].interval == 3600
