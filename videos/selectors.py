import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count
from django.http import Http404
from django.utils import timezone

from moderation.models import Block
from videos.models import Comment, Video, View

COUNTER_FIELDS = ("view_count", "like_count", "comment_count", "remix_count", "glitch_count")
TRENDING_CACHE_SECONDS = 15
TRENDING_LIMIT = 50


def video_get(*, video_id: uuid.UUID) -> Video:
    video = Video.objects.visible().filter(id=video_id).first()
    if video is None:
        raise Http404("No such video.")
    return video


def without_blocked(videos: Any, viewer: Any) -> Any:
    """Leave out videos by users the viewer has blocked."""
    if not viewer.is_authenticated:
        return videos
    return videos.exclude(owner__in=Block.objects.filter(blocker=viewer).values("blocked"))


def video_feed(*, viewer: Any) -> Any:
    return without_blocked(Video.objects.visible(), viewer).order_by("-created_at", "-id")


def video_metadata(*, video_ids: list[uuid.UUID]) -> dict[str, dict[str, int]]:
    """Counters of the listed visible videos, in one query."""
    rows = Video.objects.visible().filter(id__in=video_ids).values("id", *COUNTER_FIELDS)
    return {str(row.pop("id")): row for row in rows}


def trending_ids() -> list[str]:
    """Most viewed in the last TRENDING_WINDOW_HOURS; cached briefly so a view shows within 15 s."""
    cached = cache.get("videos:trending")
    if cached is not None:
        return cached
    since = timezone.now() - timedelta(hours=settings.TRENDING_WINDOW_HOURS)
    ids = [
        str(row["video"])
        for row in View.objects.filter(created_at__gte=since, video__deleted_at__isnull=True)
        .values("video")
        .annotate(recent_views=Count("id"))
        .order_by("-recent_views", "video")[:TRENDING_LIMIT]
    ]
    cache.set("videos:trending", ids, TRENDING_CACHE_SECONDS)
    return ids


def video_trending(*, viewer: Any) -> list[Video]:
    ids = trending_ids()
    by_id = {str(v.id): v for v in without_blocked(Video.objects.visible().filter(id__in=ids), viewer)}
    return [by_id[i] for i in ids if i in by_id]


def comment_list(*, video: Video, viewer: Any) -> Any:
    """The video's comments, without those of users the viewer has blocked."""
    comments = Comment.objects.filter(video=video)
    if viewer.is_authenticated:
        comments = comments.exclude(user__in=Block.objects.filter(blocker=viewer).values("blocked"))
    return comments.order_by("-created_at", "-id")
