from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone


class Stream(models.Model):
    """A named event stream (`channel:<id>`, `user:<id>`) and the last id it handed out.

    Ids come from this row, locked by the publishing transaction until it commits, so
    within one stream ids are committed in the order they are given: a client that
    saw id k has seen every id below k."""

    name = models.CharField(primary_key=True, max_length=120)
    last_seq = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.name} @ {self.last_seq}"


class Event(models.Model):
    """One event of a stream, written in the transaction of the change it reports
    (the outbox): replay reads these rows, the channel layer is only the fast path."""

    stream = models.CharField(max_length=120)
    seq = models.BigIntegerField()
    type = models.CharField(max_length=50)
    payload = models.JSONField(encoder=DjangoJSONEncoder)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    # The request the change was made for (core.request_log), directly or through the job
    # it enqueued; null for changes no request made (the sweep). For operators following
    # a request: never part of what a client receives.
    request_id = models.CharField(max_length=128, null=True, blank=True)  # noqa: DJ001 - null: no request made it

    class Meta:
        constraints = [models.UniqueConstraint(fields=["stream", "seq"], name="event_seq_unique_per_stream")]

    def __str__(self) -> str:
        return f"{self.stream}#{self.seq} {self.type}"
