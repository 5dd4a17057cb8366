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

    class Meta:
        # The admin's "Block selected users" asks for one of these (moderation.admin):
        # blocking on behalf of a user hides accounts from that user only; suspending
        # locks an account out of the site, so it is the stronger grant (and implies the
        # first). Nobody below superuser suspends a superuser (services.suspend_users).
        permissions = [
            ("block_user", "Can block users on behalf of a user"),
            ("suspend_user", "Can suspend users site-wide"),
        ]
