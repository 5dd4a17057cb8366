from django.conf import settings
from django.db import models


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
