"""RQ entry points for stream housekeeping."""

from django.conf import settings

from realtime.streams import prune_events


def prune_old_events() -> int:
    return prune_events(older_than_hours=settings.REALTIME_RETENTION_HOURS)
