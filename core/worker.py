"""RQ worker class used by `make run` and the tests (`rqworker --worker-class core.worker.DjangoWorker`)."""

from django.db import connections
from rq.job import Job
from rq.queue import Queue
from rq.worker import Worker

from core import request_log


class DjangoWorker(Worker):
    """A forking worker whose work horse never inherits the parent's database
    connections, nor its connection pool (whose sockets and threads do not survive a
    fork): two processes on one socket corrupt the protocol stream.

    Each job runs with the id of the request that enqueued it (its meta, written by
    core.lifecycle.enqueue) and its own job id in the log context: every line the
    worker and the work horse (a fork, which inherits it) write about the job names
    both, and the events the job publishes record the request id."""

    def execute_job(self, job: Job, queue: Queue) -> None:
        with request_log.bound(job.meta.get("request_id"), job_id=job.id):
            super().execute_job(job, queue)

    def fork_work_horse(self, job: Job, queue: Queue) -> None:
        connections.close_all()
        for connection in connections.all(initialized_only=True):
            close_pool = getattr(connection, "close_pool", None)
            if close_pool is not None:
                close_pool()
        return super().fork_work_horse(job, queue)
