"""Writes on videos. Counters change only here, atomically in SQL (F() updates in
the transaction that writes the like, view or comment row)."""

import uuid
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.db.models import F

from notifications.models import NotificationType
from notifications.services import notify
from videos.media import NotAVideo, probe
from videos.models import Comment, Like, Video, View


class UploadRejected(Exception):
    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field, self.detail = field, detail


def video_upload(*, owner: Any, file: UploadedFile, title: str, remix_of: Video | None = None) -> Video:
    """Validate by decoding, store the file and a thumbnail, save the row. A file that
    is not a video stores nothing."""
    if file.size > settings.VIDEO_MAX_UPLOAD_BYTES:
        raise UploadRejected("file", f"The file is {file.size} bytes; the limit is {settings.VIDEO_MAX_UPLOAD_BYTES}.")
    try:
        info = probe(file)
    except NotAVideo as exc:
        raise UploadRejected("file", str(exc)) from exc
    video = Video(
        id=uuid.uuid4(), owner=owner, title=title, remix_of=remix_of, duration_seconds=info.duration_seconds,
        width=info.width, height=info.height, codec=info.codec, size_bytes=file.size,
    )
    extension = (file.name.rsplit(".", 1)[-1].lower() if "." in (file.name or "") else "mp4")[:8]
    video.file.save(f"{video.id}.{extension}", file, save=False)
    video.thumbnail.save(f"{video.id}.jpg", ContentFile(info.thumbnail_jpeg), save=False)
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


def video_view(*, video: Video, user: Any) -> None:
    with transaction.atomic():
        View.objects.create(video=video, user=user if user.is_authenticated else None)
        Video.objects.filter(id=video.id).update(view_count=F("view_count") + 1)


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
