"""Writes on videos. Counters change only here, atomically in SQL (F() updates in
the transaction that writes the like or comment row). Views are counted in Redis
first (videos.counters) and moved into the rows by video_views_flush()."""

import logging
import uuid
from datetime import timedelta
from typing import Any, cast

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.db.models import BigIntegerField, Case, F, Value, When
from django.utils import timezone

from notifications.models import NotificationType
from notifications.services import notify
from videos import counters
from videos.media import THUMBNAIL, NotAVideo, probe
from videos.models import Comment, Like, Video, View, ViewFlush
from videos.selectors import video_get

logger = logging.getLogger(__name__)

# Flushed batches' ids are kept this long: far longer than a batch can wait in Redis.
VIEW_FLUSH_RETENTION = timedelta(days=7)


class UploadRejected(Exception):
    def __init__(self, field: str, detail: str, *, too_large: bool = False) -> None:
        super().__init__(detail)
        self.field, self.detail, self.too_large = field, detail, too_large


def video_upload(*, owner: Any, file: UploadedFile, title: str, remix_of: Video | None = None) -> Video:
    """Validate by decoding, store the file and a thumbnail, save the row. A file that
    is not a video stores nothing.

    The stored name is the video's id with the extension of the container the file
    was decoded as (videos.media): the client's file name and type are never used, so
    an MP4 with HTML appended, named `x.html`, is stored and served as video/mp4."""
    # Known for every uploaded file (Django's upload handlers count it); None only for a bare stream.
    size = cast(int, file.size)
    if size > settings.VIDEO_MAX_UPLOAD_BYTES:
        raise UploadRejected(
            "file", f"The file is {size} bytes; the limit is {settings.VIDEO_MAX_UPLOAD_BYTES}.", too_large=True
        )
    try:
        info = probe(file)
    except NotAVideo as exc:
        raise UploadRejected("file", str(exc)) from exc
    video = Video(
        id=uuid.uuid4(), owner=owner, title=title, remix_of=remix_of, duration_seconds=info.duration_seconds,
        width=info.width, height=info.height, codec=info.codec, size_bytes=size,
    )
    video.file.save(f"{video.id}.{info.stored_type.extension}", file, save=False)
    video.thumbnail.save(f"{video.id}.{THUMBNAIL.extension}", ContentFile(info.thumbnail_jpeg), save=False)
    try:
        with transaction.atomic():
            video.save(force_insert=True)
            if remix_of is not None:
                Video.objects.filter(id=remix_of.id).update(remix_count=F("remix_count") + 1)
                notify(
                    recipient_id=remix_of.owner_id, actor_id=owner.id, type=NotificationType.REMIX,
                    data={"video_id": str(remix_of.id), "remix_id": str(video.id), "title": title},
                )
    except Exception:
        video.file.delete(save=False)
        video.thumbnail.delete(save=False)
        raise
    return video


def video_view(*, video_id: uuid.UUID, user: Any, client_key: str = "") -> bool:
    """Count a view of a visible video, once per viewer within VIEW_DEDUP_SECONDS: the
    user, or for an anonymous caller `client_key` (see videos.views.anonymous_viewer).
    True if counted; NotFound if there is no such visible video.

    The count goes to Redis (a hot video's row would take every view as an UPDATE) and
    reaches the row at the next flush; the video's visibility is remembered there too
    (videos.counters), so a view is one Redis call and no SQL. With Redis unreachable
    the view is counted in the row at once, and logged; repeats are then not
    recognised until Redis is back."""
    viewer = f"user:{user.id}" if user.is_authenticated else f"anon:{client_key}"
    try:
        outcome = counters.view_record(video_id=video_id, viewer=viewer)
        if outcome == counters.UNKNOWN_VIDEO:
            video_get(video_id=video_id)
            counters.visible_remember(video_id)
            outcome = counters.view_record(video_id=video_id, viewer=viewer)
        if outcome >= 0:
            return outcome == 1
        # Hidden (or hidden meanwhile): the row decides.
        video_get(video_id=video_id)
    except counters.UNREACHABLE as error:
        logger.warning("Redis unreachable (%s): view of %s counted in the database", error, video_id)
    with transaction.atomic():
        video = video_get(video_id=video_id)
        View.objects.create(video=video, user=user if user.is_authenticated else None)
        Video.objects.filter(id=video.id).update(view_count=F("view_count") + 1)
    return True


def videos_hidden(*, video_ids: list[uuid.UUID]) -> None:
    """Moderation hid these videos in the current transaction: once it commits, no view
    of them is counted (the visibility remembered for views is replaced)."""

    def forget() -> None:
        try:
            counters.hidden_remember(video_ids)
        except counters.UNREACHABLE as error:
            # Views of them would be counted for up to VISIBLE_SECONDS; nothing is shown.
            logger.warning("Redis unreachable (%s): hidden videos %s still counted for views", error, video_ids)

    transaction.on_commit(forget, robust=True)


def video_views_flush() -> int:
    """Move the view counts held in Redis into the videos' rows and View rows; the
    number of views moved. Run every VIEW_FLUSH_SECONDS by the cron scheduler.

    Each batch goes through three steps: claim (rename the pending hash), apply (one
    transaction that also records the batch's ViewFlush row) and release (delete the
    hash). A flush that dies between them leaves the batch in Redis, and the next one
    applies it, or only releases it if its ViewFlush row shows it was applied: no view
    is lost and none counted twice. Concurrent flushes of one batch meet on that row."""
    moved = 0
    for _ in range(2):  # a batch a dead flush left behind, then the pending one
        batch = counters.views_claim()
        if batch is None:
            break
        moved += _views_apply(batch)
        counters.views_release(batch)
    ViewFlush.objects.filter(flushed_at__lt=timezone.now() - VIEW_FLUSH_RETENTION).delete()
    return moved


def _views_apply(batch: counters.Batch) -> int:
    with transaction.atomic():
        try:
            with transaction.atomic():
                ViewFlush.objects.create(batch=batch.token)
        except IntegrityError:
            return 0  # applied already, by a flush that died before its release
        views = {video_id: count for video_id, count in batch.views.items() if count > 0}
        # Locked (in id order), so that a video deleted meanwhile cannot fail the View rows.
        ids = list(Video.objects.select_for_update().filter(id__in=views).order_by("id").values_list("id", flat=True))
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            delta = Case(*(When(id=i, then=Value(views[i])) for i in chunk), output_field=BigIntegerField())
            Video.objects.filter(id__in=chunk).update(view_count=F("view_count") + delta)
        View.objects.bulk_create([View(video_id=i, count=views[i]) for i in ids])
    return sum(views[i] for i in ids)


def video_like(*, video: Video, user: Any) -> bool:
    """Like once; True if this call added the like."""
    with transaction.atomic():
        try:
            with transaction.atomic():
                Like.objects.create(video=video, user=user)
        except IntegrityError:
            return False
        Video.objects.filter(id=video.id).update(like_count=F("like_count") + 1)
        notify(
            recipient_id=video.owner_id, actor_id=user.id, type=NotificationType.LIKE,
            data={"video_id": str(video.id), "title": video.title}, group_key=f"like:{video.id}",
        )
    return True


def video_unlike(*, video: Video, user: Any) -> bool:
    with transaction.atomic():
        deleted, _ = Like.objects.filter(video=video, user=user).delete()
        if deleted:
            Video.objects.filter(id=video.id).update(like_count=F("like_count") - 1)
    return bool(deleted)


def video_comment(*, video: Video, user: Any, text: str) -> Comment:
    with transaction.atomic():
        comment = Comment.objects.create(video=video, user=user, text=text)
        Video.objects.filter(id=video.id).update(comment_count=F("comment_count") + 1)
        notify(
            recipient_id=video.owner_id, actor_id=user.id, type=NotificationType.COMMENT,
            data={"video_id": str(video.id), "comment_id": str(comment.id), "text": text[:140]},
        )
    return comment


def video_count_ai_result(*, video_id: uuid.UUID, kind: str) -> None:
    """A completed glitch or remix job on the video (called in the job's transaction)."""
    field = {"glitch": "glitch_count", "remix": "remix_count"}[kind]
    Video.objects.filter(id=video_id).update(**{field: F(field) + 1})
