"""RQ entry points for AI jobs: thin, calling the runner and the sweep."""

import uuid

import django_rq
from django.conf import settings



def run_job(job_id: str) -> str | None:
    from aijobs import runner

    return runner.run(job_id)


def enqueue_job(job_id: uuid.UUID, *, rq_job_id: str) -> None:
    django_rq.get_queue("default").enqueue(
        run_job, str(job_id), job_id=rq_job_id, job_timeout=settings.AI_JOB_TIMEOUT, result_ttl=3600, failure_ttl=86400
    )


def sweep_stalled_jobs() -> int:
    from aijobs import runner

    return runner.sweep_stalled()
