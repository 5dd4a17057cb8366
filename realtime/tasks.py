"""RQ entry points for stream housekeeping."""

from datetime import timedelta

from django.conf import settings

from core.idempotency import prune_idempotency_records
from realtime.streams import prune_events


def prune_old_rows() -> dict[str, int]:
    return {
        "events": prune_events(older_than_hours=settings.REALTIME_RETENTION_HOURS),
        "idempotency_records": prune_idempotency_records(timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS)),
    }
