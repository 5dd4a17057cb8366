"""Reads shared by the API views: each is a fixed number of queries, fewer (down to
none) when Redis has them (contents.caching says why a cached answer is never stale)."""

import uuid
from datetime import datetime
from typing import Any

from django.core.cache import cache
from django.db.models import QuerySet

from contents import caching
from contents.models import PROCESSING_STATUSES, Channel, Content, ContentStatus
from contents.totals import totals_get, totals_processing
from core.errors import NotFound, PermissionDenied

# A channel's status answer lists at most this many finished contents, so a channel
# of 100,000 answers as fast as one of 25; the totals stay exact (contents.totals
# keeps them: they are read, not counted).
STATUS_LIST_LIMIT = 100
LEGACY_LIST_LIMIT = 100
API_ONLY_FIELDS = (
    "id", "channel_id", "provider_id", "url", "img_url", "video_url", "title", "description", "category",
    "status", "processing_status", "progress", "estimated_completion", "error_message", "ai_gen_metadata",
    "link_preview_metadata", "version", "created_at", "updated_at",
)
STATUS_FIELDS = ("id", "status", "processing_status", "progress", "estimated_completion", "error_message", "version")


def channel_list(*, user: Any) -> QuerySet[Channel]:
    """The channels the user owns or is a member of, oldest first."""
    return Channel.objects.visible_to(user).order_by("created_at")


def channel_get(*, user: Any, channel_id: uuid.UUID) -> Channel:
    """The channel if the user may read it; 404 alike for missing and not allowed."""
    channel = Channel.objects.visible_to(user).filter(id=channel_id).first()
    if channel is None:
        raise NotFound("No such channel.")
    return channel


def channel_readable(*, user: Any, channel_id: uuid.UUID) -> bool:
    """Whether the user may read the channel (owner or member), cached: a polling
    client asks this every few seconds, and every subscribe to its stream asks too."""
    allowed = caching.cached_readers(user.id, [channel_id]).get(channel_id)
    if allowed is None:
        allowed = Channel.objects.visible_to(user).filter(id=channel_id).exists()
        caching.remember_reader(channel_id, user.id, allowed)
    return allowed


def channel_check_readable(*, user: Any, channel_id: uuid.UUID) -> None:
    """404 unless the user may read the channel, as channel_get() but cached."""
    if not channel_readable(user=user, channel_id=channel_id):
        raise NotFound("No such channel.")


def channel_stream_readable(user: Any, key: str) -> bool:
    """The rule for `channel:<id>` streams (registered with realtime.access)."""
    try:
        channel_id = uuid.UUID(key)
    except ValueError:
        return False
    return channel_readable(user=user, channel_id=channel_id)


def channel_get_owned(*, user: Any, channel_id: uuid.UUID) -> Channel:
    """The channel if the user owns it: 404 if they cannot read it, 403 if they only read it."""
    channel = channel_get(user=user, channel_id=channel_id)
    if channel.owner_id != user.id:
        raise PermissionDenied("Only the channel's owner can manage its members.")
    return channel


def content_get(*, user: Any, content_id: uuid.UUID) -> Content:
    content = Content.objects.visible_to(user).filter(id=content_id).only(*API_ONLY_FIELDS).first()
    if content is None:
        raise NotFound("No such content.")
    return content


def content_get_for_regenerate(*, user: Any, content_id: uuid.UUID) -> Content:
    """The content, whole, if the user may run its pipeline again: its provider or the
    channel's owner. 404 if they cannot see it, 403 if they only read it."""
    content = Content.objects.visible_to(user).select_related("channel").filter(id=content_id).first()
    if content is None:
        raise NotFound("No such content.")
    if user.id not in (content.provider_id, content.channel.owner_id):
        raise PermissionDenied("Only the content's provider or the channel's owner can regenerate it.")
    return content


def content_list(*, channel_id: uuid.UUID, status: str | None = None) -> QuerySet[Content]:
    contents = Content.objects.filter(channel_id=channel_id).only(*API_ONLY_FIELDS).order_by("-created_at", "-id")
    if status:
        contents = contents.filter(status=status)
    return contents


def channel_status(*, channel_id: uuid.UUID, head: int, since: datetime | None = None) -> dict[str, Any]:
    """Processing contents, recently finished ones and exact totals, in at most four
    queries (none for a list its total says is empty) or from the cache of the channel
    at `head` (read before this)."""
    return caching.remember(
        caching.status_answer_key(channel_id, head, since),
        caching.PROCESSING_SECONDS,
        lambda: _channel_status(channel_id=channel_id, head=head, since=since),
    )


def channel_has_processing(*, channel_id: uuid.UUID, head: int) -> bool:
    """Whether anything in the channel at `head` is still processing (the poll interval)."""
    return caching.remember(
        caching.processing_key(channel_id, head),
        caching.PROCESSING_SECONDS,
        lambda: totals_processing(totals_get(channel_id)) > 0,
    )


def _channel_status(*, channel_id: uuid.UUID, head: int, since: datetime | None) -> dict[str, Any]:
    # The totals first: one row, whatever the channel's size; a list whose total is 0
    # is not read at all.
    counts = totals_get(channel_id)
    totals = {
        "total_processing": totals_processing(counts),
        "total_completed": counts[ContentStatus.COMPLETE],
        "total_failed": counts[ContentStatus.ERROR],
    }
    contents = Content.objects.filter(channel_id=channel_id)
    processing = list(
        contents.filter(status__in=PROCESSING_STATUSES)
        .order_by("created_at", "id")
        .values("id", "status", "processing_status", "progress", "estimated_completion")[:STATUS_LIST_LIMIT]
    ) if totals["total_processing"] else []

    def finished(status: str, fields: tuple[str, ...]) -> list[dict[str, Any]]:
        if not counts[status]:
            return []
        rows = contents.filter(status=status)
        if since is not None:
            rows = rows.filter(finished_at__gt=since)
        return list(rows.order_by("-finished_at", "-id").values(*fields)[:STATUS_LIST_LIMIT])

    completed = finished(ContentStatus.COMPLETE, ("id", "status", "processing_status"))
    failed = finished(ContentStatus.ERROR, ("id", "status", "processing_status", "error_message"))
    has_processing = totals["total_processing"] > 0
    cache.set(caching.processing_key(channel_id, head), has_processing, caching.PROCESSING_SECONDS)
    return {
        "processing_contents": processing,
        "completed_contents": completed,
        "failed_contents": failed,
        "has_processing": has_processing,
        **totals,
    }


def content_statuses(*, user: Any, content_ids: list[uuid.UUID]) -> list[dict[str, Any]]:
    """Statuses of the listed contents the user may see, in request order: from the cache
    where Redis knows the content's channel, the user's access to it and its head; the
    rest in one query (plus one for heads Redis does not know)."""
    known = cache.get_many([caching.content_channel_key(i) for i in content_ids])
    channel_of = {i: known[caching.content_channel_key(i)] for i in content_ids if caching.content_channel_key(i) in known}
    readable = caching.cached_readers(user.id, set(channel_of.values()))
    hidden = {i for i, channel_id in channel_of.items() if readable.get(channel_id) is False}
    readable_ids = [i for i, channel_id in channel_of.items() if readable.get(channel_id)]
    # Heads before rows: a row read after its head is at least as recent as its key says.
    heads = caching.channel_heads({channel_of[i] for i in readable_ids})
    wanted = {caching.content_status_key(i, heads[channel_of[i]]): i for i in readable_ids}
    rows = {wanted[key]: row for key, row in cache.get_many(list(wanted)).items()}

    missing = [i for i in content_ids if i not in rows and i not in hidden]
    if missing:
        statuses, channels = {}, {}
        for row in Content.objects.visible_to(user).filter(id__in=missing).values(*STATUS_FIELDS, "channel_id"):
            channel_id = row.pop("channel_id")
            row["error_message"] = row["error_message"] or None
            rows[row["id"]] = row
            channels[caching.content_channel_key(row["id"])] = channel_id
            if channel_id in heads:
                statuses[caching.content_status_key(row["id"], heads[channel_id])] = row
        cache.set_many(channels, caching.CONTENT_CHANNEL_SECONDS)
        cache.set_many(statuses, caching.STATUS_SECONDS)
        for channel_id in set(channels.values()) - set(readable):
            caching.remember_reader(channel_id, user.id, True)
    return [rows[i] for i in content_ids if i in rows]
