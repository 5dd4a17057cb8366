"""Reads shared by the API views: each is a fixed number of queries."""

import uuid
from datetime import datetime
from typing import Any

from django.db.models import Count, Q, QuerySet
from django.http import Http404

from contents.models import PROCESSING_STATUSES, Channel, Content, ContentStatus

# A channel's status answer lists at most this many finished contents, so a channel
# of 100,000 answers as fast as one of 25; the totals stay exact.
STATUS_LIST_LIMIT = 100
LEGACY_LIST_LIMIT = 100
API_ONLY_FIELDS = (
    "id", "channel_id", "provider_id", "url", "img_url", "video_url", "title", "description", "category",
    "status", "processing_status", "progress", "estimated_completion", "error_message", "ai_gen_metadata",
    "link_preview_metadata", "version", "created_at", "updated_at",
)
STATUS_FIELDS = ("id", "status", "processing_status", "progress", "estimated_completion", "error_message", "version")


def channel_get(*, user: Any, channel_id: uuid.UUID) -> Channel:
    """The channel if the user may read it; 404 alike for missing and not allowed."""
    channel = Channel.objects.visible_to(user).filter(id=channel_id).first()
    if channel is None:
        raise Http404("No such channel.")
    return channel


def channel_get_owned(*, user: Any, channel_id: uuid.UUID) -> Channel:
    """The channel if the user owns it: 404 if they cannot read it, 403 if they only read it."""
    from rest_framework.exceptions import PermissionDenied

    channel = channel_get(user=user, channel_id=channel_id)
    if channel.owner_id != user.id:
        raise PermissionDenied("Only the channel's owner can manage its members.")
    return channel


def content_get(*, user: Any, content_id: uuid.UUID) -> Content:
    content = Content.objects.visible_to(user).filter(id=content_id).only(*API_ONLY_FIELDS).first()
    if content is None:
        raise Http404("No such content.")
    return content


def content_list(*, channel: Channel, status: str | None = None) -> QuerySet[Content]:
    contents = Content.objects.filter(channel=channel).only(*API_ONLY_FIELDS).order_by("-created_at", "-id")
    if status:
        contents = contents.filter(status=status)
    return contents


def channel_status(*, channel: Channel, since: datetime | None = None) -> dict[str, Any]:
    """Processing contents, recently finished ones and exact totals, in four queries."""
    contents = Content.objects.filter(channel=channel)
    processing = list(
        contents.filter(status__in=PROCESSING_STATUSES)
        .order_by("created_at", "id")
        .values("id", "status", "processing_status", "progress", "estimated_completion")[:STATUS_LIST_LIMIT]
    )

    def finished(status: str, fields: tuple[str, ...]) -> list[dict[str, Any]]:
        rows = contents.filter(status=status)
        if since is not None:
            rows = rows.filter(finished_at__gt=since)
        return list(rows.order_by("-finished_at", "-id").values(*fields)[:STATUS_LIST_LIMIT])

    completed = finished(ContentStatus.COMPLETE, ("id", "status", "processing_status"))
    failed = finished(ContentStatus.ERROR, ("id", "status", "processing_status", "error_message"))
    totals = contents.aggregate(
        total_processing=Count("id", filter=Q(status__in=PROCESSING_STATUSES)),
        total_completed=Count("id", filter=Q(status=ContentStatus.COMPLETE)),
        total_failed=Count("id", filter=Q(status=ContentStatus.ERROR)),
    )
    return {
        "processing_contents": processing,
        "completed_contents": completed,
        "failed_contents": failed,
        "has_processing": totals["total_processing"] > 0,
        **totals,
    }


def content_statuses(*, user: Any, content_ids: list[uuid.UUID]) -> list[dict[str, Any]]:
    """Statuses of the listed contents the user may see, in request order; one query."""
    rows = {row["id"]: row for row in Content.objects.visible_to(user).filter(id__in=content_ids).values(*STATUS_FIELDS)}
    for row in rows.values():
        row["error_message"] = row["error_message"] or None
    return [rows[i] for i in content_ids if i in rows]
