import uuid
from datetime import timedelta
from pathlib import PurePosixPath
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db.models import Exists, Sum
from django.utils import timezone

from accounts.models import Block
from core.errors import NotFound
from videos import counters
from videos.media import content_type_of
from videos.models import Comment, Video, View, ViewFlush

COUNTER_FIELDS = ("view_count", "like_count", "comment_count", "remix_count", "glitch_count")
TRENDING_CACHE_SECONDS = 15
TRENDING_LIMIT = 50


def stored_id(name: str) -> uuid.UUID | None:
    """The row id a stored file is named after (`<folder>/<y>/<m>/<id>.<ext>`, or
    `<id>_<random>.<ext>` when storage had to make the name unique), if any."""
    try:
        return uuid.UUID(PurePosixPath(name).stem.split("_", 1)[0])
    except ValueError:
        return None


def video_media_type(name: str) -> str | None:
    """The Content-Type to serve a stored video file or thumbnail as, or None if no
    visible video has it: a video removed by moderation is no longer served, although
    its files stay in storage for the grace period."""
    video_id = stored_id(name)
    if video_id is None:
        return None
    files = Video.objects.visible().filter(id=video_id).values_list("file", "thumbnail").first()
    return content_type_of(name) if files is not None and name in files else None


def video_get(*, video_id: uuid.UUID) -> Video:
    video = Video.objects.visible().filter(id=video_id).first()
    if video is None:
        raise NotFound("No such video.")
    return video


def counted(videos: Any, *, video_ids: list[uuid.UUID]) -> list[Any]:
    """The videos (a queryset, of models or of `.values()` with `id` and `view_count`)
    with their exact view counts: the row's plus the views still in Redis. One Redis
    round trip, then the same single query: a batch still in Redis whose ViewFlush row
    the query sees is in the rows already and is not added twice (it was applied
    between the two reads). A batch not applied then was not in the rows the query saw."""
    batches = counters.views_unflushed(video_ids)
    applied = {f"batch_{n}_applied": Exists(ViewFlush.objects.filter(batch=b.token)) for n, b in enumerate(batches)}
    rows = list(videos.annotate(**applied))
    for row in rows:
        values = row if isinstance(row, dict) else row.__dict__
        for n, batch in enumerate(batches):
            if not values.pop(f"batch_{n}_applied"):
                values["view_count"] += batch.views.get(values["id"], 0)
    return rows


def video_detail(*, video_id: uuid.UUID) -> Video:
    """One visible video with exact counters."""
    videos = counted(Video.objects.visible().filter(id=video_id), video_ids=[video_id])
    if not videos:
        raise NotFound("No such video.")
    return videos[0]


def without_blocked(videos: Any, viewer: Any) -> Any:
    """Leave out videos by users the viewer has blocked."""
    if not viewer.is_authenticated:
        return videos
    return videos.exclude(owner__in=Block.objects.filter(blocker=viewer).values("blocked"))


def video_feed(*, viewer: Any) -> Any:
    return without_blocked(Video.objects.visible(), viewer).order_by("-created_at", "-id")


def video_metadata(*, video_ids: list[uuid.UUID]) -> dict[str, dict[str, int]]:
    """Exact counters of the listed visible videos, in one query (and one Redis read)."""
    rows = counted(Video.objects.visible().filter(id__in=video_ids).values("id", *COUNTER_FIELDS), video_ids=video_ids)
    return {str(row.pop("id")): row for row in rows}


def trending_ids() -> list[str]:
    """Most viewed in the last TRENDING_WINDOW_HOURS, from the View rows; a view shows
    within VIEW_FLUSH_SECONDS (until the flush it is in Redis) + the 15 s of the cache."""
    cached = cache.get("videos:trending")
    if cached is not None:
        return cached
    since = timezone.now() - timedelta(hours=settings.TRENDING_WINDOW_HOURS)
    ids = [
        str(row["video"])
        for row in View.objects.filter(created_at__gte=since, video__deleted_at__isnull=True)
        .values("video")
        .annotate(recent_views=Sum("count"))
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
