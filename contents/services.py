"""Writes on channels and contents. A content's status changes only in `content_move()`."""

import uuid
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from contents.caching import forget_readers_on_commit
from contents.eta import estimate_completion
from contents.lifecycle import CONTENT
from contents.models import (
    ACTIVE_STAGES,
    Channel,
    ChannelMembership,
    Content,
    ContentStatus,
    ProcessingStatus,
    StageRun,
)
from contents.totals import totals_add, totals_remove
from core import lifecycle
from core.errors import Conflict, NotFound
from core.lifecycle import Move
from notifications.models import NotificationType
from notifications.services import notify
from realtime.streams import channel_stream, revoke_subscriber

Stage = ProcessingStatus


def display_title(content: Content) -> str:
    """What to call a content to a person: its title, else its link's page title, else the link."""
    preview = content.link_preview_metadata or {}
    return content.title or preview.get("title") or content.url or content.img_url or content.video_url


# The side effects of a content's move, each a step run in the move's transaction.


def record_stage_time(content: Content, move: Move) -> None:
    """Leaving a stage for the next one records how long it took (the ETA averages them)."""
    started = move.before(content, "stage_started_at")
    if move.source in ACTIVE_STAGES and move.to != Stage.FAILED and started:
        StageRun.objects.create(
            content_id=content.id, stage=move.source, seconds=(move.now - started).total_seconds(),
            produced=produced_by(move.source, content),
        )


def produced_by(stage: str, content: Content) -> int | None:
    """What a finished stage produced, in the units its progress counts (contents.progress)."""
    result = content.ai_gen_metadata or {}
    if stage == Stage.SUMMARIZING:
        return len(result.get("summary") or "")
    if stage == Stage.QA_GENERATING:
        return len(result.get("qa_list") or [])
    return None


def count_in_totals(content: Content, move: Move) -> None:
    """The channel's totals follow the move: one fewer in the old status, one more in
    the new (contents.totals). Stages of one status (summarizing, qa_generating) change
    nothing. First of the steps: the totals row is locked before the provider's stream
    (notify_finished) and the channel's (the event), as in content_submit."""
    source = move.before(content, "status")
    if source != content.status:
        totals_add(content.channel_id, {source: -1, content.status: 1})


def notify_finished(content: Content, move: Move) -> None:
    """The provider hears when their content is complete or failed."""
    if move.to not in (Stage.COMPLETED, Stage.FAILED):
        return
    notify(
        recipient_id=content.provider_id, actor_id=None,
        type=NotificationType.CONTENT_COMPLETE if move.to == Stage.COMPLETED else NotificationType.CONTENT_ERROR,
        data={"content_id": str(content.id), "channel_id": str(content.channel_id), "title": display_title(content),
              "error_message": content.error_message or None},
    )


MOVE_STEPS = (count_in_totals, record_stage_time, notify_finished)


def content_move(
    content: Content, *, to: str, changes: dict[str, Any] | None = None, error_message: str = ""
) -> Content | None:
    """The one way a content's status changes: lifecycle.transition (fenced
    compare-and-set, version + 1, the event) and MOVE_STEPS, in one transaction. None if
    the content was moved meanwhile; TransitionNotAllowed for an edge there is not."""
    return lifecycle.transition(CONTENT, content, to=to, changes=changes, error=error_message, steps=MOVE_STEPS)


def content_record_progress(content: Content, *, changes: Mapping[str, Any]) -> Content | None:
    """A running stage's partial result and progress on the content, in its status:
    lifecycle.record_progress (fenced by the run id, version + 1, the
    `content_status_update` event in the same transaction). None if the content was
    moved meanwhile or its run handed to another job: that run must stop."""
    return lifecycle.record_progress(CONTENT, content, changes=changes)


def content_move_again_if_lost(content: Content, *, to: str, **kwargs: Any) -> Content | None:
    """content_move(), once more if the database connection dies under it (a worker's)."""
    return lifecycle.move(CONTENT, content, to=to, error=kwargs.pop("error_message", ""), steps=MOVE_STEPS, **kwargs)


def content_sweep(now: datetime | None = None) -> dict[str, int]:
    """Lost enqueues enqueued again, stalled runs retried or failed (CONTENT's policy)."""
    return lifecycle.sweep(CONTENT, now, steps=MOVE_STEPS)


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
            job_id=lifecycle.new_run_id(CONTENT, content_id),
        )
        totals_add(channel.id, {ContentStatus.IDLE: 1})
        CONTENT.publish(*CONTENT.event(content))
        lifecycle.enqueue_on_commit(CONTENT, content)
    return content


def content_restart(content: Content) -> Content:
    """Retry a failed content or regenerate a complete one: back to idle/uploading,
    previous AI result cleared, pipeline enqueued on commit. Conflict if the content is
    not in a state that allows it, or was moved concurrently."""
    refusal = (
        f"The content is {content.status} ({content.processing_status}); only a complete or failed content can be regenerated."
    )
    if content.processing_status not in (Stage.COMPLETED, Stage.FAILED):
        raise Conflict(refusal)
    with transaction.atomic():
        restarted = content_move(
            content,
            to=Stage.UPLOADING,
            changes={"ai_gen_metadata": None, "source_text": "", "attempts": 1, "job_id": lifecycle.new_run_id(CONTENT, content.id)},
        )
        if restarted is None:
            raise Conflict(refusal)
        lifecycle.enqueue_on_commit(CONTENT, restarted)
    return restarted


def contents_delete_of_providers(*, provider_ids: Iterable[Any]) -> int:
    """Delete the contents these users provided, in any channel, and take them out of
    their channels' totals, in one transaction; how many. Deleting a user deletes them by
    cascade, which no step sees: the user's deletion calls this first (moderation.admin).
    A content moving meanwhile is either moved first (its new status is read under the
    lock) or finds itself gone (its move writes nothing)."""
    with transaction.atomic():
        doomed = list(
            Content.objects.select_for_update().filter(provider_id__in=list(provider_ids)).order_by("id").values_list("id", "channel_id", "status")
        )
        if not doomed:
            return 0
        totals_remove((channel_id, status) for _, channel_id, status in doomed)
        Content.objects.filter(id__in=[content_id for content_id, _, _ in doomed]).delete()
    return len(doomed)


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


def channel_remove_member(*, channel: Channel, user_id: uuid.UUID) -> None:
    """Stop a member reading the channel, open streams included; NotFound if they were not one."""
    with transaction.atomic():
        removed, _ = ChannelMembership.objects.filter(channel=channel, user_id=user_id).delete()
        if removed:
            # On commit, in this order: the cached "no" first, then the revoke. A stream
            # subscribing between the two would otherwise read the cached "yes" after its
            # hub had joined the stream, and miss the revoke sent before it.
            forget_readers_on_commit(channel.id, [user_id], removed=True)
            revoke_subscriber(channel_stream(channel.id), user_id)
    if not removed:
        raise NotFound("That user is not a member of this channel.")
