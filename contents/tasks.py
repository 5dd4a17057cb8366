"""RQ entry points: thin, calling the pipeline and the sweep."""

import uuid

import django_rq
from django.conf import settings

from contents import pipeline, sweep


def run_pipeline(content_id: str) -> str | None:
    return pipeline.run(content_id)


def enqueue_pipeline(content_id: uuid.UUID, *, job_id: str) -> None:
    django_rq.get_queue("default").enqueue(
        run_pipeline,
        str(content_id),
        job_id=job_id,
        job_timeout=settings.CONTENT_JOB_TIMEOUT,
        result_ttl=3600,
        failure_ttl=86400,
    )


def sweep_stalled_contents() -> dict[str, int]:
    return {"requeued": sweep.requeue_lost(), **sweep.sweep_stalled()}
