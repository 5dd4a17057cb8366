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


def job_is_running(job_id: str) -> bool:
    if not job_id:
        return False
    try:
        return Job.fetch(job_id, connection=django_rq.get_connection("default")).get_status() == JobStatus.STARTED
    except NoSuchJobError:
        return False
