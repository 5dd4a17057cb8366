"""Questions about RQ jobs that several apps' sweeps ask."""

import django_rq
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

WAITING = {JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED}


def job_is_waiting(job_id: str) -> bool:
    """Still in the queue (not stalled, just waiting for a free worker)."""
    if not job_id:
        return False
    try:
        return Job.fetch(job_id, connection=django_rq.get_connection("default")).get_status() in WAITING
    except NoSuchJobError:
        return False


def missing_jobs(job_ids: list[str]) -> set[str]:
    """The ids the queue has no record of at all: their enqueue failed (Redis was
    away at commit) or Redis lost them (restarted without its data). One round trip."""
    ids = [job_id for job_id in job_ids if job_id]
    if not ids:
        return set()
    pipeline = django_rq.get_connection("default").pipeline(transaction=False)
    for job_id in ids:
        pipeline.exists(Job.key_for(job_id))
    return {job_id for job_id, exists in zip(ids, pipeline.execute(), strict=True) if not exists}


def job_is_running(job_id: str) -> bool:
    if not job_id:
        return False
    try:
        return Job.fetch(job_id, connection=django_rq.get_connection("default")).get_status() == JobStatus.STARTED
    except NoSuchJobError:
        return False
