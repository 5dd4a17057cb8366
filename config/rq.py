"""RQ worker class used by `make run` and the tests."""

from django.db import connections
from rq.worker import Worker


class DjangoWorker(Worker):
    """A forking worker whose work horse never inherits the parent's database
    connections: two processes on one socket corrupt the protocol stream."""

    def fork_work_horse(self, job, queue):  # type: ignore[no-untyped-def]
        connections.close_all()
        return super().fork_work_horse(job, queue)
