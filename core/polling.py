"""X-Poll-Interval: tell a polling client how long to wait before asking again."""

from django.conf import settings


def poll_interval(active: bool) -> int:
    """Short while something is still processing, long when nothing is."""
    return settings.POLL_INTERVAL_ACTIVE if active else settings.POLL_INTERVAL_IDLE


def poll_headers(active: bool) -> dict[str, str]:
    return poll_headers_every(poll_interval(active))


def poll_headers_every(seconds: int) -> dict[str, str]:
    return {"X-Poll-Interval": str(seconds)}
