"""X-Poll-Interval: tell a polling client how long to wait before asking again."""

from django.conf import settings


def poll_interval(active: bool) -> int:
    """Short while something is still processing, long when nothing is."""
    return settings.POLL_INTERVAL_ACTIVE if active else settings.POLL_INTERVAL_IDLE


def poll_headers(active: bool) -> dict[str, str]:
    return {"X-Poll-Interval": str(poll_interval(active))}
