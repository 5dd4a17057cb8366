from django.conf import settings
from django.db import models
from django.db.models import Q


class Block(models.Model):
    """`blocker` no longer sees `blocked`'s videos and comments, nor hears of their likes,
    comments and remixes. `blocked` is not a database foreign key: any user id can be
    blocked, and whether an account has it is never told (a nonexistent id gets the same
    answer, and the same row, as an existing one). Django still deletes the blocks of a
    deleted user (on_delete)."""

    blocker = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="blocks_made")
    blocked = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="blocks_received", db_constraint=False
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["blocker", "blocked"], name="block_once"),
            models.CheckConstraint(condition=~Q(blocker=models.F("blocked")), name="block_not_self"),
        ]
        indexes = [models.Index(fields=["blocker", "-created_at"], name="block_blocker_recent")]


class VideoDeletion(models.Model):
    """The audit record of a moderation delete: what, why, who, when; and when the
    files were removed from storage (after the grace period)."""

    video = models.OneToOneField("videos.Video", on_delete=models.CASCADE, related_name="deletion")
    reason = models.TextField()
    deleted_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    deleted_at = models.DateTimeField(auto_now_add=True, db_index=True)
    files_removed_at = models.DateTimeField(null=True, blank=True)


class Suspension(models.Model):
    """A site-wide block: the user cannot log in and their tokens stop working."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="suspension")
    reason = models.TextField(blank=True)
    suspended_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
