"""Blocks, suspensions and moderation deletes."""

import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone
from knox.models import AuthToken

from accounts.models import Block
from accounts.services import tokens_revoke
from moderation.models import Suspension, VideoDeletion
from realtime.streams import revoke_user_everywhere
from videos.models import Video
from videos.services import videos_hidden


def block_users(*, blocker: Any, user_ids: list[uuid.UUID]) -> list[uuid.UUID]:
    """Block these user ids, the blocker's own left out (idempotent); returns them.
    Whether an account has an id is not looked up: answering "not found" for some
    would tell the blocker which ids exist (Block.blocked is no database constraint)."""
    blocked = [uid for uid in dict.fromkeys(user_ids) if uid != blocker.id]
    Block.objects.bulk_create([Block(blocker=blocker, blocked_id=uid) for uid in blocked], ignore_conflicts=True)
    return blocked


def unblock_user(*, blocker: Any, user_id: uuid.UUID) -> bool:
    deleted, _ = Block.objects.filter(blocker=blocker, blocked_id=user_id).delete()
    return bool(deleted)


def suspend_users(*, users: list[Any], by: Any, reason: str = "") -> int:
    """Site-wide: they cannot log in, their tokens are revoked, their open streams are
    closed on commit (and an unused ticket is refused: it names an inactive user).

    Only a superuser suspends a superuser: otherwise a moderator could lock out the
    accounts that grant their permissions. Such a batch is refused whole (PermissionDenied),
    nobody in it suspended; whether a target is a superuser is read from the database,
    not from the objects passed in."""
    with transaction.atomic():
        ids = [u.id for u in users if u.id != by.id]
        if not by.is_superuser and get_user_model().objects.filter(id__in=ids, is_superuser=True).exists():
            raise PermissionDenied("Only a superuser may suspend a superuser; nobody was suspended.")
        get_user_model().objects.filter(id__in=ids).update(is_active=False)
        # Their streams close below, every one of them, as forbidden (4403) rather than
        # as opened with a revoked token (4401).
        tokens_revoke(AuthToken.objects.filter(user_id__in=ids), close_streams=False)
        Suspension.objects.bulk_create([Suspension(user_id=i, reason=reason, suspended_by=by) for i in ids], ignore_conflicts=True)
        for user_id in ids:
            revoke_user_everywhere(user_id)
    return len(ids)


def videos_delete(*, video_ids: list[uuid.UUID], reason: str, by: Any) -> list[uuid.UUID]:
    """Hide the listed visible videos from every read path now, with an audit record;
    their files go after MODERATION_FILE_GRACE_HOURS (purge_deleted_video_files)."""
    now = timezone.now()
    with transaction.atomic():
        ids = list(Video.objects.visible().filter(id__in=video_ids).select_for_update().values_list("id", flat=True))
        Video.objects.filter(id__in=ids).update(deleted_at=now)
        VideoDeletion.objects.bulk_create([VideoDeletion(video_id=i, reason=reason, deleted_by=by) for i in ids])
        videos_hidden(video_ids=ids)
    return ids


def purge_deleted_video_files(now: datetime | None = None) -> int:
    """Remove from storage the files of videos deleted longer ago than the grace period."""
    now = now or timezone.now()
    due = VideoDeletion.objects.select_related("video").filter(
        files_removed_at__isnull=True, deleted_at__lte=now - timedelta(hours=settings.MODERATION_FILE_GRACE_HOURS)
    )[:500]
    purged = 0
    for deletion in due:
        video = deletion.video
        for field in (video.file, video.thumbnail):
            if field.name:  # an empty file field has no name (and no file)
                field.storage.delete(field.name)
        VideoDeletion.objects.filter(id=deletion.id).update(files_removed_at=now)
        purged += 1
    return purged
