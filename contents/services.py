"""Writes on channels and contents. A content's status changes only in `transition()`."""

import uuid
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from contents.caching import forget_readers_on_commit
from contents.eta import estimate_completion
from contents.models import (
    ACTIVE_STAGES,
    STATUS_OF_STAGE,
    Channel,
    ChannelMembership,
    Content,
    ProcessingStatus,
    StageRun,
)
from notifications.models import NotificationType
from notifications.services import notify
from realtime.streams import channel_stream, publish, revoke_subscriber

Stage = ProcessingStatus

# Every allowed move. Retry (from failed) and regenerate (from completed) both start
# the pipeline over at uploading.
ALLOWED_TRANSITIONS: dict[str, frozenset[str]] = {
    Stage.UPLOADING: frozenset({Stage.SUMMARIZING, Stage.FAILED}),
    Stage.SUMMARIZING: frozenset({Stage.QA_GENERATING, Stage.FAILED}),
    Stage.QA_GENERATING: frozenset({Stage.COMPLETED, Stage.FAILED}),
    Stage.COMPLETED: frozenset({Stage.UPLOADING}),
    Stage.FAILED: frozenset({Stage.UPLOADING}),
}
PROGRESS_ON_ENTRY = {Stage.UPLOADING: 0, Stage.SUMMARIZING: 30, Stage.QA_GENERATING: 65, Stage.COMPLETED: 100}

CONTENT_STATUS_UPDATE = "content_status_update"
PROCESSING_COMPLETE = "processing_complete"
PROCESSING_ERROR = "processing_error"


class TransitionNotAllowed(Exception):
    def __init__(self, source: str, target: str) -> None:
        super().__init__(f"A content cannot move from {source} to {target}.")
        self.source, self.target = source, target


def event_type_for(stage: str) -> str:
    if stage == Stage.COMPLETED:
        return PROCESSING_COMPLETE
    if stage == Stage.FAILED:
        return PROCESSING_ERROR
    return CONTENT_STATUS_UPDATE


def event_payload(content: Content) -> dict[str, Any]:
    """The content's full current status (not a delta), so a late or repeated event
    is harmless: clients keep the highest `version`."""
    payload: dict[str, Any] = {
        "content_id": str(content.id),
        "status": content.status,
        "processing_status": content.processing_status,
        "progress": content.progress,
        "estimated_completion": content.estimated_completion.isoformat() if content.estimated_completion else None,
        "error_message": content.error_message or None,
        "version": content.version,
        "timestamp": content.updated_at.isoformat(),
    }
    if content.processing_status == Stage.COMPLETED:
        payload["ai_gen_metadata"] = content.ai_gen_metadata
    return payload


def display_title(content: Content) -> str:
    """What to call a content to a person: its title, else its link's page title, else the link."""
    preview = content.link_preview_metadata or {}
    return content.title or preview.get("title") or content.url or content.img_url or content.video_url


def new_job_id(content_id: uuid.UUID) -> str:
    return f"content-{content_id}-{uuid.uuid4().hex[:12]}"


def transition(
    content: Content, *, to: str, changes: dict[str, Any] | None = None, error_message: str = ""
) -> Content | None:
    """Move `content` from the stage it was read in to `to`, with `changes` written in
    the same UPDATE. The UPDATE only matches the row as it was read (stage,
    version and the job that owns the run): if someone else moved it first, or the
    sweep handed the run to a new job, nothing is written and None is returned. On success the content's version rises by one, the event is written
    in the same transaction and sent once it commits."""
    source = content.processing_status
    if to not in ALLOWED_TRANSITIONS.get(source, frozenset()):
        raise TransitionNotAllowed(source, to)
    now = timezone.now()
    values: dict[str, Any] = {
        "status": STATUS_OF_STAGE[to],
        "processing_status": to,
        "updated_at": now,
        **(changes or {}),
    }
    if to == Stage.FAILED:
        values.update(error_message=error_message[:2000] or "Processing failed.", estimated_completion=None, finished_at=now)
    else:
        values.update(progress=PROGRESS_ON_ENTRY[to], error_message="")
    if to in ACTIVE_STAGES:
        values.update(
            stage_started_at=now,
            heartbeat_at=now,
            finished_at=None,
            estimated_completion=estimate_completion(to, stage_started_at=now, now=now),
        )
    elif to == Stage.COMPLETED:
        values.update(estimated_completion=None, finished_at=now)

    with transaction.atomic():
        moved = Content.objects.filter(
            id=content.id, processing_status=source, version=content.version, job_id=content.job_id
        ).update(
            version=F("version") + 1, **values
        )
        if not moved:
            return None
        if source in ACTIVE_STAGES and to != Stage.FAILED and content.stage_started_at:
            StageRun.objects.create(
                content_id=content.id, stage=source, seconds=(now - content.stage_started_at).total_seconds()
            )
        for field, value in values.items():
            setattr(content, field, value)
        content.version += 1
        publish(channel_stream(content.channel_id), event_type_for(to), event_payload(content))
        if to in (Stage.COMPLETED, Stage.FAILED):
            notify(
                recipient_id=content.provider_id, actor_id=None,
                type=NotificationType.CONTENT_COMPLETE if to == Stage.COMPLETED else NotificationType.CONTENT_ERROR,
                data={"content_id": str(content.id), "channel_id": str(content.channel_id), "title": display_title(content),
                      "error_message": content.error_message or None},
            )
    return content


def _enqueue_on_commit(content: Content) -> None:
    from contents.tasks import enqueue_pipeline

    content_id, job_id = content.id, content.job_id
    # robust: a failed enqueue (Redis away) must not fail the request whose row is
    # already committed; the sweep enqueues it again (contents.sweep.requeue_lost).
    transaction.on_commit(lambda: enqueue_pipeline(content_id, job_id=job_id), robust=True)


def content_submit(
    *,
    channel: Channel,
    provider: Any,
    url: str = "",
    img_url: str = "",
    video_url: str = "",
    title: str = "",
    description: str = "",
    category: str = "",
) -> Content:
    """Save a content as idle/uploading and start its pipeline once the row is committed."""
    now = timezone.now()
    content_id = uuid.uuid4()
    eta = estimate_completion(Stage.UPLOADING, stage_started_at=now, now=now)
    with transaction.atomic():
        content = Content.objects.create(
            id=content_id,
            channel=channel,
            provider=provider,
            url=url,
            img_url=img_url,
            video_url=video_url,
            title=title,
            description=description,
            category=category,
            stage_started_at=now,
            heartbeat_at=now,
            estimated_completion=eta,
            job_id=new_job_id(content_id),
        )
        publish(channel_stream(channel.id), CONTENT_STATUS_UPDATE, event_payload(content))
        _enqueue_on_commit(content)
    return content


def content_restart(content: Content) -> Content | None:
    """Retry a failed content or regenerate a complete one: back to idle/uploading,
    previous AI result cleared, pipeline enqueued on commit. None if the content was
    not in a state that allows it (or was moved concurrently)."""
    if content.processing_status not in (Stage.COMPLETED, Stage.FAILED):
        return None
    with transaction.atomic():
        restarted = transition(
            content,
            to=Stage.UPLOADING,
            changes={"ai_gen_metadata": None, "source_text": "", "attempts": 1, "job_id": new_job_id(content.id)},
        )
        if restarted is not None:
            _enqueue_on_commit(restarted)
    return restarted


def channel_create(*, owner: Any, name: str) -> Channel:
    return Channel.objects.create(owner=owner, name=name)


def channel_add_members(*, channel: Channel, user_ids: Iterable[uuid.UUID]) -> list[uuid.UUID]:
    """Let these user ids read the channel (idempotent); returns them all. Whether an
    account has an id is not looked up: answering "not found" for some would tell the
    owner which ids exist (ChannelMembership.user is no database constraint)."""
    added = list(dict.fromkeys(user_ids))
    with transaction.atomic():
        ChannelMembership.objects.bulk_create(
            [ChannelMembership(channel=channel, user_id=uid) for uid in added if uid != channel.owner_id],
            ignore_conflicts=True,
        )
        # A "no" cached before they were added would keep refusing them for a while.
        forget_readers_on_commit(channel.id, added, removed=False)
    return added


def channel_remove_member(*, channel: Channel, user_id: uuid.UUID) -> bool:
    """Stop a member reading the channel, open streams included; False if they were not one."""
    with transaction.atomic():
        removed, _ = ChannelMembership.objects.filter(channel=channel, user_id=user_id).delete()
        if removed:
            revoke_subscriber(channel_stream(channel.id), user_id)
            forget_readers_on_commit(channel.id, [user_id], removed=True)
    return bool(removed)
