"""RQ entry points for core's own housekeeping."""

from datetime import timedelta

from django.conf import settings

from core.idempotency import prune_idempotency_records


def prune_expired_idempotency_records() -> int:
    return prune_idempotency_records(timedelta(hours=settings.IDEMPOTENCY_KEY_TTL_HOURS))
